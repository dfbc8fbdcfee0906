"""``sasrec-tf``: the command line, one module per subcommand.

The library never imports this package: it raises ``ValueError``/``DataError`` and this layer
turns them into one-line messages and exit codes (2: a usage or data problem; 130: interrupted;
141: the reader of stdout left, as in ``sasrec-tf info DIR | head``).
TensorFlow's C++ start-up noise is silenced unless ``-v`` is given (before or after the
subcommand). Every ``--help`` shows each flag's default. Building the parser imports no TensorFlow
(help and argument errors answer at once); each subcommand imports it in ``run``.

Adding a subcommand: a module here with ``register(subcommands)`` (which adds its parser and sets
``func``) and one entry in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import traceback
from typing import Sequence

from sasrec_tf.cli import (ablation, add_items, attention, common, demo, evaluate, export, info, recommend, serve,
                           shard, train, tune)
from sasrec_tf.cli.common import UsageError

COMMANDS = (demo, train, tune, evaluate, recommend, ablation, attention, export, add_items, info, serve, shard)

__all__ = ["COMMANDS", "UsageError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``sasrec-tf`` parser, every subcommand of :data:`COMMANDS` registered."""
    parser = argparse.ArgumentParser(prog="sasrec-tf", description="Train, evaluate, export and serve SASRec.",
                                     formatter_class=common.DefaultsHelpFormatter)
    common.add_verbose_flag(parser, default=False)
    subcommands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(subcommands)
    for subparser in set(subcommands.choices.values()):
        # -v after the subcommand too; SUPPRESS keeps a -v given before it (no default overwrites it).
        common.add_verbose_flag(subparser, default=argparse.SUPPRESS)
        subparser.formatter_class = common.with_defaults(subparser.formatter_class)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``sasrec-tf`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = any(arg in ("-v", "--verbose") for arg in argv)
    try:
        with contextlib.nullcontext() if verbose else common.quiet_tensorflow():
            return _run(argv)
    except BrokenPipeError:  # `sasrec-tf info DIR | head`: the reader left; no traceback, no error line
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
        except (OSError, ValueError):
            pass
        return 141  # 128 + SIGPIPE, as a shell reports a command killed by it


def _run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("sasrec-tf: interrupted (rerun the same command to resume training)", file=sys.stderr)
        return 130
    except BrokenPipeError:
        raise  # an OSError, but no error of the command's: main() answers it
    except (UsageError, ValueError, FileNotFoundError, FileExistsError, OSError) as err:
        # DataError is a ValueError. -v shows where it came from.
        if args.verbose:
            traceback.print_exc()
        print(f"sasrec-tf: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 -- only running out of memory is answered here
        if not (isinstance(err, MemoryError) or type(err).__name__ == "ResourceExhaustedError"):
            raise
        if args.verbose:
            traceback.print_exc()
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        print(f"sasrec-tf: error: out of memory ({first}): lower what the model or a batch holds: "
              "--max-len, --hidden-units, --batch-size or --num-negatives", file=sys.stderr)
        return 2
