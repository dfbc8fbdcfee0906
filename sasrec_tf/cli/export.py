"""``sasrec-tf export``: a trained model as a versioned SavedModel for TensorFlow Serving."""

from __future__ import annotations

import argparse
from pathlib import Path

from sasrec_tf.cli.common import UsageError, default_of
from sasrec_tf.cli.feature_flags import add_cold_score_offset_flag, check_cold_score_offset
from sasrec_tf.export import describe_signatures, export_saved_model
from sasrec_tf.serving.options import DEFAULTS


def register(subcommands) -> None:
    parser = subcommands.add_parser(
        "export", help="export a trained model as a versioned SavedModel for TensorFlow Serving",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Write EXPORT_BASE/NAME/<version>/ atomically, with the vocabulary inside and TF Serving "
                    "warmup requests and the model card (`sasrec-tf info`) in assets.extra/. With --gate-on, "
                    "nothing is written unless the model's validation metric is at least the latest version's "
                    "(less the tolerance). Signatures:\n" + describe_signatures())
    parser.add_argument("--model", required=True, help="model directory written by `sasrec-tf train`")
    parser.add_argument("--export-base", dest="export_base", required=True,
                        help="directory that TF Serving (or `sasrec-tf serve`) watches")
    parser.add_argument("--name", default=DEFAULTS.model_name,
                        help=f"model name clients use (default: {DEFAULTS.model_name})")
    parser.add_argument("--version", type=int, help="version number (default: the next integer)")
    k = default_of(export_saved_model, "k")
    parser.add_argument("--k", type=int, default=k, help=f"items returned per request (default: {k})")
    parser.add_argument("--no-warmup", dest="warmup", action="store_false",
                        help="do not write assets.extra/tf_serving_warmup_requests")
    parser.add_argument("--gate-on", dest="gate_on", metavar="METRIC",
                        help="publish only if this validation metric (ndcg@10, or sampled.ndcg@10) is not worse "
                             "than the latest version's (from its card) by more than --gate-tolerance")
    parser.add_argument("--gate-tolerance", dest="gate_tolerance", type=float, metavar="DELTA",
                        help="how much lower the metric may be "
                             f"(default: {default_of(export_saved_model, 'gate_tolerance')})")
    parser.add_argument("--force", action="store_true", help="publish even if the gate refuses (recorded in the card)")
    add_cold_score_offset_flag(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sasrec_tf.card import GateRefused, read_card
    from sasrec_tf.cli.progress import Steps

    if Path(args.export_base).exists() and not Path(args.export_base).is_dir():
        raise UsageError(f"--export-base {args.export_base} is a file; expected the directory TF Serving watches")
    if args.gate_on is None and (args.force or args.gate_tolerance is not None):
        raise UsageError("--force and --gate-tolerance apply to the publish gate: add --gate-on METRIC")
    check_cold_score_offset("--cold-score-offset", args.cold_score_offset)
    tolerance = {} if args.gate_tolerance is None else {"gate_tolerance": args.gate_tolerance}
    steps = ["load", "trace and save", *(["warmup"] if args.warmup else []), "publish"]
    progress = Steps(f"exporting {args.model} to {Path(args.export_base) / args.name}", len(steps), names=steps)
    try:
        path = export_saved_model(args.model, args.export_base, args.name, version=args.version, k=args.k,
                                  warmup=args.warmup, gate_on=args.gate_on, **tolerance,
                                  force=args.force, progress=progress, cold_score_offset=args.cold_score_offset)
    except GateRefused as err:
        raise UsageError(f"{err}; nothing was exported (--force publishes it anyway)") from None
    gate = read_card(path)["export"]["gate"]
    if gate is not None:
        print(gate["message"] + ("; published anyway (--force)" if gate["forced"] else ""))
    print(f"exported {args.name} version {path.name} to {path}")
    return 0
