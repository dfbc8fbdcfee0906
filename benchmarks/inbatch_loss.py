"""In-batch softmax: tensorflow-recommenders' ``Retrieval`` task against our distinct-item form.

    python benchmarks/inbatch_loss.py
    python benchmarks/inbatch_loss.py --shape 2300:12101 --shape 34639:1682 --steps 5

For each ``POSITIONS:ITEMS`` shape, draws that many target ids from a Zipf-like popularity over
the catalogue (as real batches repeat popular items), and times the loss plus its gradients
(queries and item table, log-q correction on) both ways: ``tfrs.tasks.Retrieval`` builds
``[M, M]`` logits, :func:`sasrec_tf.losses.inbatch_softmax_crossentropy` ``[M, U]`` over the
``U`` distinct items. Prints ms per step, the largest logit matrix each builds, and the two loss
values (equal up to float rounding). Shapes whose ``[M, M]`` matrix would exceed
``--max-tfrs-gib`` are not run through TFRS.
"""

from __future__ import annotations

import argparse
import time

from sasrec_tf.testing.bench import set_tensorflow_environment

set_tensorflow_environment()


def parse_shape(text: str) -> tuple[int, int]:
    positions, _, items = text.partition(":")
    return int(positions), int(items)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", action="append", type=parse_shape, metavar="POSITIONS:ITEMS",
                        help="target positions per batch and catalogue size (repeatable; default: "
                             "2300:12101 = Beauty at batch 256, 8000:1682 and 34639:1682 = MovieLens-100K)")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--zipf", type=float, default=0.8, help="popularity exponent of the drawn ids")
    parser.add_argument("--max-tfrs-gib", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    shapes = args.shape or [(2300, 12101), (8000, 1682), (34639, 1682)]

    import numpy as np
    import sasrec_tf
    import tensorflow as tf
    from sasrec_tf import losses
    from sasrec_tf._compat import keras

    tfrs = sasrec_tf.import_tfrs()
    task = tfrs.tasks.Retrieval(
        loss=keras.losses.CategoricalCrossentropy(from_logits=True, reduction=keras.losses.Reduction.SUM),
        remove_accidental_hits=True,
    )
    rng = np.random.default_rng(args.seed)
    print(f"{'positions':>9} {'items':>6} {'distinct':>8} | {'form':<8} {'ms/step':>8} {'logits MiB':>10} {'loss':>9}")
    for positions, items in shapes:
        popularity = 1.0 / np.arange(1, items + 1) ** args.zipf
        popularity /= popularity.sum()
        ids = tf.constant(rng.choice(items, size=positions, p=popularity) + 1)
        table = tf.Variable(rng.normal(size=(items + 1, args.dim)).astype(np.float32))
        queries = tf.Variable(rng.normal(size=(positions, args.dim)).astype(np.float32))
        probability = tf.constant(popularity[ids.numpy() - 1].astype(np.float32))
        distinct = int(tf.size(tf.unique(ids)[0]))

        def step(loss_fn):
            @tf.function
            def run():
                with tf.GradientTape() as tape:
                    loss = loss_fn(queries, tf.gather(table, ids))
                return loss, tape.gradient(loss, [queries, table])
            return run

        forms = {
            "tfrs": (step(lambda q, c: task(q, c, candidate_ids=ids, candidate_sampling_probability=probability,
                                            compute_metrics=False, compute_batch_metrics=False) / positions),
                     positions * positions),
            "distinct": (step(lambda q, c: losses.inbatch_softmax_crossentropy(q, c, ids, probability)),
                         positions * distinct),
        }
        for name, (run, cells) in forms.items():
            mib = cells * 4 / 2**20
            if name == "tfrs" and mib / 1024 > args.max_tfrs_gib:
                print(f"{positions:>9} {items:>6} {distinct:>8} | {name:<8} {'skipped':>8} {mib:>10.0f} "
                      f"(over --max-tfrs-gib)")
                continue
            loss, _ = run()
            start = time.perf_counter()
            for _ in range(args.steps):
                run()
            ms = (time.perf_counter() - start) / args.steps * 1000
            print(f"{positions:>9} {items:>6} {distinct:>8} | {name:<8} {ms:>8.1f} {mib:>10.0f} {float(loss):>9.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
