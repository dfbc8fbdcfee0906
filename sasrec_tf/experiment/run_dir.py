"""A run's output directory: its fingerprint, the resume of an interrupted run, and the publish.

Layout of ``OUT`` while a run is unfinished::

    backup/     Keras' BackupAndRestore state, and run.json (the fingerprint and progress)
    logs/       TensorBoard

and once it is finished: the model directory (:mod:`sasrec_tf.artifacts`), ``metrics.json``,
``card.json`` and ``logs/``. The finished files are written into a hidden staging sibling
(``.OUT.tmp-new-*``) that then replaces ``OUT`` by renames (:func:`publish`): a reader sees the
old run or the new one, never a mix. TensorFlow-free.
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

__all__ = ["BACKUP_DIR", "LOGS_DIR", "METRICS_FILE", "RUN_FILE", "discard", "new_staging", "prepare_out_dir",
           "publish", "record_progress", "run_fingerprint"]

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
BACKUP_DIR = "backup"  # Keras' BackupAndRestore state, and RUN_FILE, while a run is unfinished
LOGS_DIR = "logs"  # TensorBoard
RUN_FILE = "run.json"  # in BACKUP_DIR: the run's fingerprint and progress, for a resume


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
    for leftover in out_dir.parent.glob(f".{out_dir.name}.tmp-*"):  # a publish that was killed
        shutil.rmtree(leftover, ignore_errors=True)
    run_file = out_dir / BACKUP_DIR / RUN_FILE
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
        if saved.get("fingerprint") != fingerprint:
            raise ValueError(f"{out_dir} holds an interrupted run with other settings "
                             f"({_differences(saved.get('fingerprint') or {}, fingerprint)}): rerun it with its "
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
    as one unit: a reader sees the old run or the new one, never a mix (between the two renames,
    briefly, no directory)."""
    if (out_dir / LOGS_DIR).exists():
        os.rename(out_dir / LOGS_DIR, staging / LOGS_DIR)
    if out_dir.exists():
        old = _sibling(out_dir, "old")
        os.rename(out_dir, old)
        os.rename(staging, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(staging, out_dir)


def _sibling(out_dir: Path, role: str) -> Path:
    """A new hidden directory name next to ``out_dir`` (removed by the next run if left behind)."""
    return out_dir.parent / f".{out_dir.name}.tmp-{role}-{secrets.token_hex(4)}"
