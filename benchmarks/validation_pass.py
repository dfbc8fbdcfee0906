"""One validation pass (full ranking + the sampled protocol) against its score product.

    python benchmarks/validation_pass.py [--repeats 5] [--users 22363 --items 12101 --mean-length 8.9]

On a generated log shaped like Amazon Beauty (22,363 users, 12,101 items, ~9 items per user,
long-tailed lengths) and the paper configuration (d 50, 2 blocks, max_len 50; untrained weights:
the cost does not depend on them), times, alternately in one process so that machine load hits
them alike:

- **(a) score product**: the queries precomputed, ``[rows, d] @ [d, N + 1]`` per batch of the
  validation pass (its batches: users sorted by length, ``--batch-size`` rows), nothing else —
  no ranking, no top-k. The floor a validation pass cannot go below; its FLOP/s is
  ``2 * users * d * (N + 1) / seconds``.
- **(b) query encoder**: ``query_embeddings`` over the same batches (each cut to its longest
  history, as the pass does).
- **(c) validation pass**, before and after: ``evaluate(model, split)`` with the full protocol
  then the sampled one run alone and the previous rank count (**before**: each protocol encodes
  every user) and with both at once (**after**: :class:`~sasrec_tf.evaluation.JointRanking`, one
  encoder pass, and the kernel's one-comparison rank count), end to end (preparation, negatives,
  tracing included, as ``sasrec-tf evaluate`` and the final evaluation of ``train`` pay it); and
  on prepared ranking objects (what the validation callback pays each epoch: only the ranking),
  with a middle row, one pass but the previous rank count, that splits the gain between the two.

It checks first that before and after give the same ranks (with ``max_users`` 10,000 for the
sampled protocol too), then prints min and median of ``--repeats`` rounds, the ratio (c)/(a)
and the CPU. The machine these numbers come from may be shared: read the minimum.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

from sasrec_tf.testing.bench import (BEAUTY_ITEMS, BEAUTY_MEAN_LENGTH, BEAUTY_USERS, cpu_model,
                                     set_tensorflow_environment)

set_tensorflow_environment()


def timed(fn) -> tuple[float, float]:
    """Wall and process CPU seconds (every thread) of ``fn()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


@contextlib.contextmanager
def previous_rank_count():
    """Trace with the rank count as it was before (``sum(beats(scores[:, 1:], target))``)."""
    import tensorflow as tf
    from sasrec_tf.ranking import kernel

    def count_beating(scores, target_scores):
        return tf.reduce_sum(tf.cast(kernel.beats(scores[:, 1:], target_scores), tf.int32), axis=1)

    current, kernel._count_beating = kernel._count_beating, count_beating
    try:
        yield
    finally:
        kernel._count_beating = current


def before_evaluate(model, split, batch_size):
    """``evaluate`` as it was: each protocol alone (each encodes every user), the previous rank count."""
    from sasrec_tf.evaluation import evaluate

    with previous_rank_count():
        return [evaluate(model, split, protocols=(p,), batch_size=batch_size) for p in ("full", "sampled")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=BEAUTY_USERS)
    parser.add_argument("--items", type=int, default=BEAUTY_ITEMS)
    parser.add_argument("--mean-length", type=float, default=BEAUTY_MEAN_LENGTH)
    parser.add_argument("--batch-size", type=int, default=1024, help="users per step (evaluate's default)")
    parser.add_argument("--repeats", type=int, default=5, help="alternated rounds (the minimum is the figure)")
    args = parser.parse_args(argv)

    import numpy as np
    import tensorflow as tf

    from sasrec_tf import SASRec, SASRecConfig
    from sasrec_tf.data import leave_one_out
    from sasrec_tf.evaluation import FullRanking, JointRanking, SampledRanking, evaluate
    from sasrec_tf.ranking import kernel
    from sasrec_tf.testing.bench import benchmark_log

    data = benchmark_log(num_users=args.users, num_items=args.items, mean_length=args.mean_length,
                         min_length=5, length_distribution="lognormal")
    split = leave_one_out(data)
    config = SASRecConfig()  # the paper's: d 50, 2 blocks, max_len 50
    model = SASRec(config, num_items=data.num_items).build_weights()
    inputs, targets = split.valid_inputs, split.valid_targets
    users, d, columns = len(targets), config.hidden_units, data.num_items + 1
    lengths = [len(h) for h in inputs]
    print(f"log: {users} validation users, {data.num_items} items, {np.mean(lengths):.1f} items of history per "
          f"user (max {max(lengths)}); paper config d {d}, {config.num_blocks} blocks, max_len {config.max_len}; "
          f"batch {args.batch_size}")

    # Same ranks before and after, every user and the paper's 10,000-user sample for the sampled protocol.
    for max_users in (None, 10000):
        with previous_rank_count():
            full = FullRanking(model, inputs, targets, batch_size=args.batch_size).ranks()
            sampled = SampledRanking(model, inputs, targets, max_users=max_users, batch_size=args.batch_size).ranks()
        joint = JointRanking(model, inputs, targets, sampled_max_users=max_users, batch_size=args.batch_size).ranks()
        np.testing.assert_array_equal(joint[0], full)
        np.testing.assert_array_equal(joint[1], sampled)
    print("ranks: before == after (full ranking; sampled with every user and with max_users 10000)")

    # The validation pass's batches, their queries and the item matrix, for (a) and (b).
    ranking = FullRanking(model, inputs, targets, batch_size=args.batch_size)
    batches = [(tf.constant(item_ids), tf.constant(user_ids)) for _, _, item_ids, user_ids, _ in ranking._batches()]
    encode = tf.function(model.query_embeddings, input_signature=[tf.TensorSpec([ranking.rows, None], tf.int32)])
    queries = [encode(item_ids) for item_ids, _ in batches]
    matrix = ranking.ranker.item_matrix()
    product = tf.function(kernel.score_all)  # queries @ item matrix^T, nothing else
    product(queries[0], matrix)  # traced

    def score_product():
        for q in queries:
            product(q, matrix)

    def encoder():
        for item_ids, _ in batches:
            encode(item_ids)

    prepared = {
        "before": [FullRanking(model, inputs, targets, batch_size=args.batch_size),
                   SampledRanking(model, inputs, targets, batch_size=args.batch_size)],
        "shared": [JointRanking(model, inputs, targets, batch_size=args.batch_size)],
        "after": [JointRanking(model, inputs, targets, batch_size=args.batch_size)],
    }
    for name, rankings in prepared.items():
        with previous_rank_count() if name != "after" else contextlib.nullcontext():
            for r in rankings:
                r.ranks()  # traced once per object, as in the callback

    runs = {
        "(a) score product": score_product,
        "(b) query encoder": encoder,
        "(c) evaluate(), before": lambda: before_evaluate(model, split, args.batch_size),
        "(c) evaluate(), after": lambda: evaluate(model, split, batch_size=args.batch_size),
        "(c) prepared, before": lambda: [r.ranks() for r in prepared["before"]],
        "(c) prepared, one pass, old count": lambda: [r.ranks() for r in prepared["shared"]],
        "(c) prepared, after": lambda: [r.ranks() for r in prepared["after"]],
    }
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            wall, used = timed(fn)
            seconds[name].append(wall)
            cpu[name].append(used)

    print(f"\nCPU: {cpu_model()} (possibly shared with other work: read the minimum)")
    print(f"{args.repeats} alternated rounds\n")
    print(f"| {'what':<34} | {'min s':>7} | {'median s':>8} | {'min / (a)':>9} | {'CPU s (min)':>11} |")
    print(f"|{'-' * 36}|{'-' * 9}|{'-' * 10}|{'-' * 11}|{'-' * 13}|")
    floor = min(seconds["(a) score product"])
    for name, values in seconds.items():
        print(f"| {name:<34} | {min(values):>7.3f} | {statistics.median(values):>8.3f} | "
              f"{min(values) / floor:>8.2f}x | {min(cpu[name]):>11.3f} |")
    flops = 2 * users * d * columns
    print(f"\nscore product: {flops / 1e9:.1f} GFLOP per pass, {flops / floor / 1e9:.1f} GFLOP/s (min)")
    before, after = min(seconds["(c) evaluate(), before"]), min(seconds["(c) evaluate(), after"])
    print(f"evaluate(): after / before = {after / before:.2f}; prepared: "
          f"{min(seconds['(c) prepared, after']) / min(seconds['(c) prepared, before']):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
