"""``sasrec-tf export``: a trained model as a versioned SavedModel for TensorFlow Serving."""

from __future__ import annotations

import argparse
from pathlib import Path

from sasrec_tf.cli.common import UsageError


def register(subcommands) -> None:
    from sasrec_tf.export import describe_signatures

    parser = subcommands.add_parser(
        "export", help="export a trained model as a versioned SavedModel for TensorFlow Serving",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Write EXPORT_BASE/NAME/<version>/ atomically, with the vocabulary inside and TF Serving "
                    "warmup requests in assets.extra/. Signatures:\n" + describe_signatures())
    parser.add_argument("--model", required=True, help="model directory written by `sasrec-tf train`")
    parser.add_argument("--export-base", dest="export_base", required=True,
                        help="directory that TF Serving (or `sasrec-tf serve`) watches")
    parser.add_argument("--name", default="sasrec", help="model name clients use (default: sasrec)")
    parser.add_argument("--version", type=int, help="version number (default: the next integer)")
    parser.add_argument("--k", type=int, default=10, help="items returned per request (default: 10)")
    parser.add_argument("--no-warmup", dest="warmup", action="store_false",
                        help="do not write assets.extra/tf_serving_warmup_requests")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sasrec_tf.export import export_saved_model

    if Path(args.export_base).exists() and not Path(args.export_base).is_dir():
        raise UsageError(f"--export-base {args.export_base} is a file; expected the directory TF Serving watches")
    path = export_saved_model(args.model, args.export_base, args.name, version=args.version, k=args.k,
                              warmup=args.warmup)
    print(f"exported {args.name} version {path.name} to {path}")
    return 0
