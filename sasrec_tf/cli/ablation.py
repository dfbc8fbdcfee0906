"""``sasrec-tf ablation``: the paper's Table IV variants trained and evaluated; writes ablation.md/.csv
and the pictures ablation.png (bars) and ablation_curves.png (each variant's curves)."""

from __future__ import annotations

import argparse
from pathlib import Path

from sasrec_tf import experiment
from sasrec_tf.ablation import DEFAULT_VARIANTS, PICTURE_FILES, TABLE_FILES, VARIANTS
from sasrec_tf.cli.common import UsageError, add_data_flags, add_option_flag, add_train_flags, read_data, train_options
from sasrec_tf.config import SASRecConfig


def register(subcommands) -> None:
    parser = subcommands.add_parser("ablation",
                                    help="train the paper's Table IV variants; writes ablation.md/.csv/.png")
    add_data_flags(parser)
    parser.add_argument("--out", required=True, help=f"directory for {', '.join(TABLE_FILES + PICTURE_FILES)}")
    parser.add_argument("--config", help="pipeline file whose model section is the base configuration")
    add_option_flag(parser, SASRecConfig, "epochs", help="epochs per variant (default: the config's)")
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS), choices=list(VARIANTS),
                        metavar="VARIANT", help=f"variants to run (default: all): {', '.join(VARIANTS)}")
    add_train_flags(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sasrec_tf.ablation import format_markdown, run_ablation, variant_config
    from sasrec_tf.cli.train import resolve_config

    pipeline = experiment.load_pipeline(args.config)
    base = resolve_config(args, pipeline)
    try:
        for name in args.variants:
            variant_config(base, name)
    except ValueError as err:
        raise UsageError(str(err)) from None
    options = train_options(args, pipeline)
    data = read_data(args, pipeline)
    print(f"data: {data.num_users} users, {data.num_items} items; variants: {', '.join(args.variants)}")
    rows = run_ablation(data, base, args.variants, options=options, out_dir=args.out,
                        on_row=lambda row: print(
                            f"  {row['variant']}: test full NDCG@10 {row['full_ndcg@10']} "
                            f"({row['epochs']} epochs, {row['wall_s']} s)", flush=True))
    print(format_markdown(rows))
    print("wrote " + ", ".join(str(Path(args.out) / name) for name in TABLE_FILES + PICTURE_FILES
                                if (Path(args.out) / name).exists()))
    return 0
