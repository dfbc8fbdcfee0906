"""What the benchmarks share before TensorFlow starts: its environment, the benchmark log, memory.

Importing this module imports no TensorFlow, so a benchmark can call
:func:`set_tensorflow_environment` first. The timers that need Keras are in
:mod:`sasrec_tf.testing.clock`.
"""

from __future__ import annotations

import os
import platform
import resource

__all__ = [
    "BEAUTY_ITEMS",
    "BEAUTY_MEAN_LENGTH",
    "BEAUTY_USERS",
    "GAMES_ITEMS",
    "GAMES_MEAN_LENGTH",
    "GAMES_USERS",
    "benchmark_log",
    "cpu_model",
    "peak_rss_mib",
    "set_tensorflow_environment",
]

# The shape of the paper's Amazon Games data, the default generated workload.
GAMES_USERS = 31013
GAMES_ITEMS = 23715
GAMES_MEAN_LENGTH = 9.3
# The shape of the Amazon Beauty file (S3-Rec's preprocessing), for benchmarks of validation and serving.
BEAUTY_USERS = 22363
BEAUTY_ITEMS = 12101
BEAUTY_MEAN_LENGTH = 8.9


def cpu_model() -> str:
    """The CPU's model name and how many logical CPUs there are (``"AMD EPYC x 2"``), from
    ``/proc/cpuinfo``; else the platform's processor string. Every benchmark table names it: these
    machines change between sessions."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
        return f"{names[0]} x {len(names)}" if names else platform.processor() or "unknown"
    except OSError:
        return platform.processor() or "unknown"


def set_tensorflow_environment(log_level: str = "2") -> None:
    """Select Keras 2 for TensorFlow and quiet its C++ logging, unless the caller's environment says otherwise.

    Call it before TensorFlow is imported (the variables are read then); subprocesses inherit them.

    Args:
        log_level: ``TF_CPP_MIN_LOG_LEVEL``: "2" hides info and warnings, "3" errors too.
    """
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", log_level)


def benchmark_log(data: str | None = None, format: str = "s3rec", *, num_users: int = GAMES_USERS,
                  num_items: int = GAMES_ITEMS, mean_length: float = GAMES_MEAN_LENGTH, seed: int = 0,
                  **generator):
    """The log a benchmark trains on: the file ``data`` if given, else a generated one.

    Args:
        data: Interaction log path (read by ``sasrec_tf.data.load_dataset``), or None.
        format: Its format.
        num_users, num_items, mean_length, seed: The generated log's shape (default: Games).
        **generator: More ``generate_interactions`` arguments (e.g. ``length_distribution``).

    Returns:
        ``SequenceData`` (``.sequences``, ``.num_items``, ...).
    """
    from sasrec_tf.data import build_sequences, generate_interactions, load_dataset

    if data:
        return load_dataset(data, format)
    return build_sequences(generate_interactions(num_users=num_users, num_items=num_items,
                                                 mean_length=mean_length, seed=seed, **generator))


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
