"""A run's output directory: its fingerprint, the resume of an interrupted run, and the publish.

While a run is unfinished, ``OUT/backup/`` holds Keras' BackupAndRestore state and ``run.json``
(the fingerprint, the progress, and the name of the run's staging directory), and everything else
of the new run lives in that hidden staging sibling ``.OUT.tmp-new-*``: its TensorBoard ``logs/``
from the first epoch on, then the model directory (:mod:`sasrec_tf.artifacts`), ``metrics.json``
and ``card.json``. A finished run already in ``OUT`` (``--overwrite``) stays whole, logs included,
until the staging replaces ``OUT`` in one atomic exchange where the system has one, else by two
renames that the next run repairs if a kill falls between them (:func:`publish`): a reader sees
the old run or the new one, never a mix. TensorFlow-free.
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
           "publish", "record_progress", "record_trained", "recover_publish", "run_fingerprint", "run_staging",
           "trained_staging"]

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
    any, stays whole (its logs too) until the new one replaces it (:func:`publish`). Either way the
    run then has its staging directory (:func:`run_staging`), recorded in ``run.json``.

    Raises:
      ValueError: ``out_dir`` is a file, or holds an interrupted run with other settings (the
        message lists the differences) or an unreadable one.
      FileExistsError: ``out_dir`` holds a finished run or other files (without ``overwrite``).
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} is a file; expected a directory (new, or one to resume or overwrite)")
    run_file = out_dir / BACKUP_DIR / RUN_FILE
    recover_publish(out_dir, keep=None if overwrite else _recorded_staging(run_file))  # a killed publish
    start_over = "start over with --overwrite, or choose a new --out"
    if overwrite:  # the new run's state; the old run's logs stay with it until the publish
        shutil.rmtree(out_dir / BACKUP_DIR, ignore_errors=True)
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
        _ensure_staging(out_dir, saved, resumed=True)
        return saved.get("progress", {})
    elif out_dir.exists() and any(out_dir.iterdir()):
        what = ("a finished run (metrics.json)" if (out_dir / METRICS_FILE).exists()
                else "files, but no interrupted run to resume")
        raise FileExistsError(f"--out {out_dir} already holds {what}: pass --overwrite to replace it, "
                              "or choose a new --out")
    _ensure_staging(out_dir, {"fingerprint": fingerprint, "progress": {}}, resumed=False)
    return {}


def _ensure_staging(out_dir: Path, saved: dict[str, Any], *, resumed: bool) -> None:
    """Give the run in ``out_dir`` (``saved``: its ``run.json``) its staging directory: the
    recorded one if it is still there, else a new one, recorded. A resumed run interrupted
    before the staging held the logs has them in ``OUT/logs``: they move in."""
    name = saved.get("staging")
    staging = out_dir.parent / name if isinstance(name, str) and "/" not in name else None
    if staging is None or not staging.is_dir():
        staging = new_staging(out_dir)
        atomic_write_json(out_dir / BACKUP_DIR / RUN_FILE, {**saved, "staging": staging.name})
    if resumed and (out_dir / LOGS_DIR).is_dir() and not (out_dir / METRICS_FILE).exists() \
            and not (staging / LOGS_DIR).exists():
        os.rename(out_dir / LOGS_DIR, staging / LOGS_DIR)


def run_staging(out_dir: Path) -> Path | None:
    """The staging directory of the unfinished run in ``out_dir`` (after :func:`prepare_out_dir`):
    where its TensorBoard logs go, then its finished files. None if there is no such run."""
    name = _recorded_staging(out_dir / BACKUP_DIR / RUN_FILE)
    staging = out_dir.parent / name if name is not None else None
    return staging if staging is not None and staging.is_dir() else None


def _read_run(run_file: Path) -> dict[str, Any]:
    """``run.json`` as a dict (empty if missing or unreadable)."""
    try:
        saved = json.loads(run_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return saved if isinstance(saved, dict) else {}


def _recorded_staging(run_file: Path) -> str | None:
    """The staging directory name ``run.json`` records (the run's, or its trained model's)."""
    saved = _read_run(run_file)
    name = saved.get("staging")
    return name if isinstance(name, str) and "/" not in name else _staging_name(saved.get("progress"))


def _write_run(out_dir: Path, fingerprint: dict[str, Any], progress: dict[str, Any]) -> None:
    """Write ``run.json`` with new progress, keeping the staging directory it records."""
    run_file = out_dir / BACKUP_DIR / RUN_FILE
    staging = _read_run(run_file).get("staging")
    atomic_write_json(run_file, {"fingerprint": fingerprint, "progress": progress,
                                 **({"staging": staging} if isinstance(staging, str) else {})})


def _staging_name(progress: Any) -> str | None:
    """The staging directory name a run's progress records as holding its trained model, if any."""
    trained = progress.get("trained") if isinstance(progress, dict) else None
    name = trained.get("staging") if isinstance(trained, dict) else None
    return name if isinstance(name, str) and "/" not in name else None


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
    _write_run(out_dir, fingerprint, progress)


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
    _write_run(out_dir, fingerprint, {"epochs": epochs, "seconds": seconds})


def new_staging(out_dir: Path) -> Path:
    """A new, empty staging directory beside ``out_dir`` for the finished run's files."""
    staging = _sibling(out_dir, "new")
    staging.parent.mkdir(parents=True, exist_ok=True)
    staging.mkdir()
    return staging


def discard(staging: Path | None) -> None:
    """Remove a staging directory that will not be published (a failed or interrupted run)."""
    if staging is not None:
        shutil.rmtree(staging, ignore_errors=True)


def publish(out_dir: Path, staging: Path) -> None:
    """Replace ``out_dir`` by ``staging`` (the new run, its logs included) as one unit: a reader
    sees the old run or the new one, never a mix.

    Where the system can swap two directories in one step (Linux ``renameat2(RENAME_EXCHANGE)``),
    ``OUT`` is never missing, whatever the moment of a kill. Elsewhere two renames are used, and a
    kill between them (``OUT`` missing, the old run in ``.OUT.tmp-old-*``, the complete new one in
    ``.OUT.tmp-new-*``) is repaired by the next run (:func:`recover_publish`).
    """
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
