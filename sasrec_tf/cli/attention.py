"""``sasrec-tf attention-plot``: heatmaps of average attention by position (the paper's Figure 4)."""

from __future__ import annotations

import argparse
from pathlib import Path

from sasrec_tf.attention import average_attention, plot_attention
from sasrec_tf.cli.common import UsageError, add_data_flags, default_of, read_model_data


def register(subcommands) -> None:
    parser = subcommands.add_parser("attention-plot",
                                    help="heatmaps of average attention by position (paper's Fig. 4)")
    parser.add_argument("--model", required=True, help="trained model directory (sasrec-tf train --out)")
    add_data_flags(parser, from_model=True)
    parser.add_argument("--out", required=True, help="PNG file; the matrices go next to it as .npz")
    parser.add_argument("--max-users", dest="max_users", type=int, help="average over a random subset of users")
    parser.add_argument("--last", type=int, help="show only the last N positions (the most recent items)")
    parser.add_argument("--title")
    parser.add_argument("--seed", type=int, default=default_of(average_attention, "seed"),
                        help="seed of the user subset")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from sasrec_tf.artifacts import load_trained
    from sasrec_tf.data.sequences import leave_one_out

    trained = load_trained(args.model)
    model = trained.model
    data = read_model_data(args, args.model, vocab=trained.vocab)
    user_ids = None
    if model.uses_user_embedding:
        if trained.user_ids is None or list(data.user_ids) != list(trained.user_ids):
            raise UsageError("this model has user embeddings: plot it on the users it was trained on")
    split = leave_one_out(data)
    if model.uses_user_embedding:
        user_ids = np.asarray(split.test_users) + 1
    maps = average_attention(model, split.test_inputs, user_ids=user_ids, max_users=args.max_users, seed=args.seed)
    out = Path(args.out)
    plot_attention(maps, out, last=args.last, title=args.title)
    npz = maps.save(out.with_suffix(".npz"))
    print(f"averaged attention of {maps.num_users} users over {maps.num_layers} layer(s); wrote {out} and {npz}")
    return 0
