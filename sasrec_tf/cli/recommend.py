"""``sasrec-tf recommend``: every user's top-k items from their whole history, to Parquet or CSV."""

from __future__ import annotations

import argparse
import sys
import time

from sasrec_tf.cli.common import add_data_flags, read_model_data
from sasrec_tf.export.contract import DEFAULT_K


def register(subcommands) -> None:
    parser = subcommands.add_parser(
        "recommend", help="write top-k recommendations for every (or the listed) user to parquet or csv",
        description="One row per recommendation (user_id, rank, item_id, score): the numbers the export's "
                    "serving_default returns for each user's whole history in the --data log. Items unknown to "
                    "the model are dropped from histories; users left with none get no rows (one summary line).")
    parser.add_argument("--model", required=True, metavar="DIR", help="model directory written by `sasrec-tf train`")
    add_data_flags(parser, from_model=True)
    parser.add_argument("--out", required=True, metavar="FILE", help="output file: NAME.parquet or NAME.csv")
    parser.add_argument("--k", type=int, default=DEFAULT_K, metavar="INT",
                        help=f"recommendations per user (default: {DEFAULT_K}, as the export's serving_default)")
    parser.add_argument("--users", metavar="FILE",
                        help="file of raw user ids, one per line: recommend for these only, in this order")
    parser.add_argument("--include-history", dest="include_history", action="store_true",
                        help="allow items the user already interacted with (repeat consumption)")
    parser.add_argument("--batch-size", dest="batch_size", type=int, metavar="INT",
                        help="users scored per step (default: recommend_to_file's)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sasrec_tf.cli.progress import Progress
    from sasrec_tf.recommend import read_user_ids, recommend_to_file

    users = read_user_ids(args.users) if args.users else None
    data = read_model_data(args, args.model, vocab=None)
    started = time.perf_counter()
    progress = Progress(f"recommending top {args.k} to {args.out}", "user")
    batch_size = {} if args.batch_size is None else {"batch_size": args.batch_size}
    summary = recommend_to_file(args.model, data, args.out, k=args.k, users=users,
                                include_history=args.include_history, progress=progress, **batch_size)
    progress.close()
    seconds = time.perf_counter() - started
    line = summary.without_history_line()
    if line:
        print(f"sasrec-tf: {line}", file=sys.stderr)
    print(f"wrote {summary.rows} recommendations for {summary.users} users to {summary.path} "
          f"({summary.users / max(seconds, 1e-9):.0f} users/s)")
    return 0

