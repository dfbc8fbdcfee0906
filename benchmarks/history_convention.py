"""History exclusion by -inf (ours) or by a score of 0 (the BSARec / TV-Rec / WEARec repositories).

Those repositories exclude a user's history from full ranking by setting its items' scores to 0
(``rating_pred[train_matrix > 0] = 0`` before the arg-sort), not to minus infinity. That is the
same ranking only while no candidate that matters scores below 0: a history item at 0 outranks
every target whose score is negative, and a target that is itself in the history (a repeated
item) is ranked with a score of 0. Dot-product scores have no sign constraint, so this prints, for
a trained model directory on its log's test split:

- the share of negative scores, and of test targets scoring below 0;
- HR@10 / NDCG@10 / HR@20 / NDCG@20 with our convention (history excluded; a repeated target is
  a miss, as the served model that excludes history can only miss it) and with theirs (history
  items scored 0, the target ranked whatever its history, ties broken pessimistically as ours);
- how many users' rank changes.

    python benchmarks/history_convention.py --model RUN_DIR --data ../shared/data/amazon-iclrec/Beauty.txt

The log is read with the options the run recorded (as ``sasrec-tf evaluate`` does).
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from sasrec_tf.testing.bench import set_tensorflow_environment

set_tensorflow_environment()


def _metrics(ranks: np.ndarray) -> dict[str, float]:
    hit10, hit20 = ranks <= 10, ranks <= 20
    gain = 1.0 / np.log2(ranks + 1.0)
    return {"hr@10": float(hit10.mean()), "ndcg@10": float(np.where(hit10, gain, 0).mean()),
            "hr@20": float(hit20.mean()), "ndcg@20": float(np.where(hit20, gain, 0).mean())}


def main(argv=None) -> int:
    from sasrec_tf.cli.common import add_data_flags, read_model_data

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a model directory written by `sasrec-tf train`")
    add_data_flags(parser, from_model=True)
    parser.add_argument("--batch-size", type=int, default=512)
    args = parser.parse_args(argv)

    import tensorflow as tf

    from sasrec_tf.artifacts import load_trained
    from sasrec_tf.data.pipeline import pad_sequences
    from sasrec_tf.data.sequences import leave_one_out
    from sasrec_tf.ranking import Ranker, kernel

    trained = load_trained(args.model)
    data = read_model_data(args, args.model, vocab=trained.vocab)
    split = leave_one_out(data)
    ranker = Ranker(trained.model)
    matrix = ranker.item_matrix()
    ours, theirs, negative_scores, negative_targets, total = [], [], 0, 0, 0
    inputs, targets = split.test_inputs, np.asarray(split.test_targets)
    users = np.asarray(split.test_users) + 1
    for start in range(0, len(targets), args.batch_size):
        rows = slice(start, start + args.batch_size)
        histories = [np.asarray(h) for h in inputs[rows]]
        window = np.asarray(pad_sequences(histories, ranker.max_len), np.int32)
        longest = max(len(h) for h in histories)
        full = np.asarray(pad_sequences(histories, longest), np.int64)
        batch_targets = tf.constant(targets[rows])
        user_ids = tf.constant(users[rows]) if ranker.uses_user_embedding else None
        scores = ranker.scores(tf.constant(window), user_ids, item_matrix=matrix)
        ours.append(kernel.history_excluded_ranks(scores, batch_targets, tf.constant(full)).numpy())
        # Theirs: every history item (a repeated target too) scored 0, then ranked as a candidate.
        pairs, _ = kernel.history_exclusions(tf.constant(full))
        zeroed = tf.tensor_scatter_nd_update(scores, pairs, tf.zeros(tf.shape(pairs)[:1], scores.dtype))
        theirs.append(kernel.target_ranks(zeroed, batch_targets).numpy())
        real = scores.numpy()[:, 1:]
        negative_scores += int((real < 0).sum())
        total += real.size
        negative_targets += int((tf.gather(scores, batch_targets, batch_dims=1).numpy() < 0).sum())
    ours, theirs = np.concatenate(ours), np.concatenate(theirs)
    result = {
        "users": int(len(targets)),
        "negative_score_share": negative_scores / total,
        "targets_scoring_below_0": negative_targets / len(targets),
        "users_whose_rank_differs": int((ours != theirs).sum()),
        "ours_minus_inf": _metrics(ours),
        "theirs_zero": _metrics(theirs),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
