"""A run's output directory: its fingerprint, the resume of an interrupted run, and the publish.

Layout of ``OUT`` while a run is unfinished::

    backup/     Keras' BackupAndRestore state, and run.json (the fingerprint and progress)
    logs/       TensorBoard

and once it is finished: the model directory (:mod:`sasrec_tf.artifacts`), ``metrics.json``,
``card.json`` and ``logs/``. The finished files are written into a hidden staging sibling
(``.OUT.tmp-new-*``) that then replaces ``OUT`` in one atomic exchange where the system has one,
else by two renames that the next run repairs if a kill falls between them (:func:`publish`): a
reader sees the old run or the new one, never a mix. TensorFlow-free.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from sasrec_tf.config import SASRecConfig
from sasrec_tf.files import atomic_write_json
from sasrec_tf.layout import BACKUP_DIR, LOGS_DIR, METRICS_FILE, MODEL_FILE, RUN_FILE

__all__ = ["BACKUP_DIR", "LOGS_DIR", "METRICS_FILE", "RUN_FILE", "discard", "new_staging", "prepare_out_dir",
           "publish", "record_progress", "record_trained", "recover_publish", "run_fingerprint", "trained_staging"]

logger = logging.getLogger(__name__)



def run_fingerprint(data, config: SASRecConfig, shards=None) -> dict[str, Any]:
    """What a resumed run must share with the interrupted one: the configuration (but ``epochs``,
    which a rerun may change) and the data (sizes, and a digest of ids and sequences; for shards,
    of their manifest).

    Returns:
      ``{"config": {...}, "data": {"users", "interactions", "items", "sha256"}}``.
    """
    digest = hashlib.sha256()
    if shards is not None:
        digest.update(json.dumps(shards.manifest, sort_keys=True, default=str).encode())
        sizes = {"users": shards.num_users, "interactions": int(shards.num_interactions)}
    else:
        for ids in (data.user_ids, data.vocab.ids):
            digest.update("\x1f".join(map(str, ids)).encode() + b"\x1e")
        digest.update(data.lengths().tobytes())
        for sequence in data.sequences:
            digest.update(np.asarray(sequence, dtype=np.int64).tobytes())
        sizes = {"users": data.num_users, "interactions": int(data.lengths().sum())}
    model = config.to_dict()
    del model["epochs"]
    return {"config": model, "data": {**sizes, "items": data.num_items, "sha256": digest.hexdigest()}}


def prepare_out_dir(out_dir: Path, fingerprint: dict[str, Any], overwrite: bool) -> dict[str, Any]:
    """Make ``out_dir`` ready for a run; returns the progress of the interrupted run it resumes
    (``{}`` for a new run).

    The rules: a directory holding an interrupted run (``backup/run.json``) is resumed if the
    fingerprints match and refused otherwise; any other non-empty directory (a finished run, or
    anything else) is refused. ``overwrite`` starts over in any case; the old finished run, if
    any, stays until the new one replaces it (:func:`publish`).

    Raises:
      ValueError: ``out_dir`` is a file, or holds an interrupted run with other settings (the
        message lists the differences) or an unreadable one.
      FileExistsError: ``out_dir`` holds a finished run or other files (without ``overwrite``).
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} is a file; expected a directory (new, or one to resume or overwrite)")
    run_file = out_dir / BACKUP_DIR / RUN_FILE
    recover_publish(out_dir, keep=None if overwrite else _trained_staging(run_file))  # a killed publish
    start_over = "start over with --overwrite, or choose a new --out"
    if overwrite:
        for name in (BACKUP_DIR, LOGS_DIR):
            shutil.rmtree(out_dir / name, ignore_errors=True)
    elif run_file.exists():
        try:
            saved = json.loads(run_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise ValueError(f"{run_file} is unreadable, so the interrupted run cannot be resumed: "
                             f"{start_over}") from None
        saved_fingerprint = _with_new_defaults(saved.get("fingerprint") or {})
        if saved_fingerprint != fingerprint:
            raise ValueError(f"{out_dir} holds an interrupted run with other settings "
                             f"({_differences(saved_fingerprint, fingerprint)}): rerun it with its "
                             f"settings to resume it, or {start_over}")
        logger.info("resuming the interrupted run in %s", out_dir)
        return saved.get("progress", {})
    elif out_dir.exists() and any(out_dir.iterdir()):
        what = ("a finished run (metrics.json)" if (out_dir / METRICS_FILE).exists()
                else "files, but no interrupted run to resume")
        raise FileExistsError(f"--out {out_dir} already holds {what}: pass --overwrite to replace it, "
                              "or choose a new --out")
    atomic_write_json(run_file, {"fingerprint": fingerprint, "progress": {}})
    return {}


def _staging_name(progress: Any) -> str | None:
    """The staging directory name a run's progress records as holding its trained model, if any."""
    trained = progress.get("trained") if isinstance(progress, dict) else None
    name = trained.get("staging") if isinstance(trained, dict) else None
    return name if isinstance(name, str) and "/" not in name else None


def _trained_staging(run_file: Path) -> str | None:
    """:func:`_staging_name` of the progress in ``run.json`` (None if it is missing or unreadable)."""
    try:
        return _staging_name(json.loads(run_file.read_text(encoding="utf-8")).get("progress"))
    except (OSError, ValueError, AttributeError):
        return None


def trained_staging(out_dir: Path, progress: dict[str, Any]) -> Path | None:
    """The staging directory holding an interrupted run's trained model, when its training had
    finished and the model was saved (:func:`record_trained`) before the kill; else None."""
    name = _staging_name(progress)
    if name is None:
        return None
    staging = out_dir.parent / name
    return staging if (staging / MODEL_FILE).is_file() else None


def record_trained(out_dir: Path, fingerprint: dict[str, Any], staging: Path, training: dict[str, Any]) -> None:
    """Record in ``backup/run.json`` that training finished and its model is saved in ``staging``
    (Keras' ``BackupAndRestore`` deletes its own state when training ends), so a run killed in
    its final evaluation or publish is finished by the next run without training again."""
    progress = {"epochs": training.get("epochs"), "seconds": training.get("wall_seconds"),
                "trained": {"staging": staging.name, "training": training}}
    atomic_write_json(out_dir / BACKUP_DIR / RUN_FILE, {"fingerprint": fingerprint, "progress": progress})


def _with_new_defaults(fingerprint: dict[str, Any]) -> dict[str, Any]:
    """A saved fingerprint with the configuration fields added since it was written set to their
    defaults (an added field's default is what the code did before it existed, e.g. ``beta_2``),
    so a run interrupted before an upgrade still resumes."""
    if not isinstance(fingerprint.get("config"), dict):
        return fingerprint
    defaults = SASRecConfig().to_dict()
    del defaults["epochs"]
    return {**fingerprint, "config": {**defaults, **fingerprint["config"]}}


def _differences(saved: dict[str, Any], current: dict[str, Any]) -> str:
    """What differs between two fingerprints, for the message that refuses a resume."""
    changes = []
    if saved.get("data") != current["data"]:
        def sizes(data):
            return ", ".join(f"{(data or {}).get(k)} {k}" for k in ("users", "items", "interactions"))
        changes.append(f"data: {sizes(saved.get('data'))} before, {sizes(current['data'])} now"
                       if sizes(saved.get("data")) != sizes(current["data"]) else "data: same sizes, other content")
    before, now = saved.get("config") or {}, current["config"]
    changes += [f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(before) | set(now))
                if before.get(k) != now.get(k)]
    return "; ".join(changes) or "unknown"


def record_progress(out_dir: Path, fingerprint: dict[str, Any], epochs: int, seconds: float) -> None:
    """Record in ``backup/run.json`` the epochs done and the training time so far (for a resume)."""
    atomic_write_json(out_dir / BACKUP_DIR / RUN_FILE,
                      {"fingerprint": fingerprint, "progress": {"epochs": epochs, "seconds": seconds}})


def new_staging(out_dir: Path) -> Path:
    """A new, empty staging directory beside ``out_dir`` for the finished run's files."""
    staging = _sibling(out_dir, "new")
    staging.mkdir()
    return staging


def discard(staging: Path | None) -> None:
    """Remove a staging directory that will not be published (a failed or interrupted run)."""
    if staging is not None:
        shutil.rmtree(staging, ignore_errors=True)


def publish(out_dir: Path, staging: Path) -> None:
    """Move the run's TensorBoard logs into ``staging``, then replace ``out_dir`` by ``staging``
    as one unit: a reader sees the old run or the new one, never a mix.

    Where the system can swap two directories in one step (Linux ``renameat2(RENAME_EXCHANGE)``),
    ``OUT`` is never missing, whatever the moment of a kill. Elsewhere two renames are used, and a
    kill between them (``OUT`` missing, the old run in ``.OUT.tmp-old-*``, the complete new one in
    ``.OUT.tmp-new-*``) is repaired by the next run (:func:`recover_publish`).
    """
    if (out_dir / LOGS_DIR).exists():
        os.rename(out_dir / LOGS_DIR, staging / LOGS_DIR)
    if not out_dir.exists():
        os.rename(staging, out_dir)
    elif _exchange(staging, out_dir):
        shutil.rmtree(staging, ignore_errors=True)  # it now holds the old run
    else:
        old = _sibling(out_dir, "old")
        os.rename(out_dir, old)
        os.rename(staging, out_dir)
        shutil.rmtree(old, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories atomically (Linux ``renameat2`` with ``RENAME_EXCHANGE``); False where
    the system or the file system cannot, so the caller falls back to two renames."""
    import ctypes
    import errno

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(code, os.strerror(code), str(a))


def recover_publish(out_dir: Path, keep: str | None = None) -> Path | None:
    """Repair a publish killed between its two renames, then remove the leftovers of killed runs.

    With ``OUT`` missing, the newest complete new run (``.OUT.tmp-new-*`` holding
    ``metrics.json``, which is written before the renames) becomes ``OUT``; without one, the old
    run (``.OUT.tmp-old-*``) is put back. ``keep`` names a staging directory to leave alone (the
    trained, unpublished model of an interrupted run: :func:`record_trained`). Returns the
    directory that became ``OUT``, if any.
    """
    def newest(role: str, complete: bool = False) -> Path | None:
        found = [p for p in out_dir.parent.glob(f".{out_dir.name}.tmp-{role}-*")
                 if p.is_dir() and (not complete or (p / METRICS_FILE).is_file())]
        return max(found, key=lambda p: p.stat().st_mtime) if found else None

    restored = None
    if not out_dir.exists():
        restored = newest("new", complete=True) or newest("old")
        if restored is not None:
            os.rename(restored, out_dir)
            logger.warning("%s was missing after a killed publish: restored it from %s", out_dir, restored.name)
    for leftover in out_dir.parent.glob(f".{out_dir.name}.tmp-*"):
        if leftover.name != keep:
            shutil.rmtree(leftover, ignore_errors=True)
    return restored


def _sibling(out_dir: Path, role: str) -> Path:
    """A new hidden directory name next to ``out_dir`` (removed by the next run if left behind)."""
    return out_dir.parent / f".{out_dir.name}.tmp-{role}-{secrets.token_hex(4)}"
