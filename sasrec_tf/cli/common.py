"""What the subcommands share: the usage error, data and training flags, tables, quiet start-up."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Sequence

from sasrec_tf.experiment import DataOptions, TrainOptions


class UsageError(Exception):
    """A problem with the command line or a config file (exit code 2, one line)."""


def quiet_tensorflow() -> None:
    """Import TensorFlow without its C++ start-up lines (CUDA probing, absl, oneDNN) and keep its
    C++ logging to fatal errors. Respects a ``TF_CPP_MIN_LOG_LEVEL`` the user set."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    with _stderr_silenced():
        import tensorflow  # noqa: F401
        import tf_keras  # noqa: F401


@contextlib.contextmanager
def _stderr_silenced():
    """Point file descriptor 2 at /dev/null (C++ code writes there directly), then restore it."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


# ------------------------------------------------------------------------------------ data
# Every DataOptions field has a flag of the same name (added below).
_DATA_FLAGS = tuple(field.name for field in dataclasses.fields(DataOptions))


def add_data_flags(parser: argparse.ArgumentParser, required_format: bool = False) -> None:
    """``--data``, ``--format`` and the reading/filtering options of :class:`DataOptions`."""
    from sasrec_tf.data.ingest import FORMATS

    parser.add_argument("--data", required=True, help="interaction log: file path")
    parser.add_argument("--format", choices=FORMATS, required=required_format, default=None)
    parser.add_argument("--user-col", dest="user_col")
    parser.add_argument("--item-col", dest="item_col")
    parser.add_argument("--time-col", dest="time_col")
    parser.add_argument("--rating-col", dest="rating_col")
    parser.add_argument("--min-rating", dest="min_rating", type=float,
                        help="keep interactions rated at least this (implicit feedback)")
    parser.add_argument("--sep", help="field separator for csv")
    parser.add_argument("--min-user-interactions", dest="min_user_interactions", type=int)
    parser.add_argument("--min-item-interactions", dest="min_item_interactions", type=int)
    parser.add_argument("--duplicates", choices=("keep", "first", "last"))


def data_options(args: argparse.Namespace, base: DataOptions | None = None) -> DataOptions:
    """``base`` (a pipeline file's ``data`` section) with the flags that were given."""
    given = {name: getattr(args, name) for name in _DATA_FLAGS if getattr(args, name, None) is not None}
    return dataclasses.replace(base or DataOptions(), **given)


def read_data(args: argparse.Namespace, base: DataOptions | None = None, vocab=None):
    """The log named by ``--data``, read with :func:`data_options`."""
    return data_options(args, base).read(args.data, vocab=vocab)


# ------------------------------------------------------------------------------------ training
_TRAIN_FLAGS = ("eval_every", "patience", "max_eval_users")


def add_train_flags(parser: argparse.ArgumentParser) -> None:
    """The :class:`TrainOptions` flags and ``--set`` for any SASRecConfig field."""
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="any SASRecConfig field (value parsed as JSON), e.g. --set loss=full_softmax")
    parser.add_argument("--eval-every", dest="eval_every", type=int, help="validate every N epochs")
    parser.add_argument("--patience", type=int, help="early stopping after N evaluations without improvement")
    parser.add_argument("--max-eval-users", dest="max_eval_users", type=int,
                        help="validate on a seeded sample of this many users")


def train_options(args: argparse.Namespace, base: TrainOptions) -> TrainOptions:
    given = {name: getattr(args, name) for name in _TRAIN_FLAGS if getattr(args, name, None) is not None}
    return dataclasses.replace(base, **given)


# ------------------------------------------------------------------------------------ output
def format_table(rows: Sequence[tuple[str, dict[str, dict[str, float]]]]) -> str:
    """HR@10, NDCG@10 and MRR under both protocols, one line per named result."""
    keys = ("hr@10", "ndcg@10", "mrr")
    header = f"{'':<28}" + "".join(f"{p + ' ' + k:>16}" for p in ("full", "sampled") for k in keys)
    lines = [header]
    for name, result in rows:
        lines.append(f"{name:<28}" + "".join(f"{result[p][k]:>16.4f}" for p in ("full", "sampled") for k in keys))
    return "\n".join(lines)


def write_json(path: str | Path, value: Any) -> None:
    Path(path).write_text(json.dumps(value, indent=2, sort_keys=True) + "\n", encoding="utf-8")
