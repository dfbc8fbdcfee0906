"""Query encoder: the full forward's last row against ``query_embeddings`` (last position only).

    python benchmarks/query_encoder.py [--items 25000] [--repeats 200]

Serving, export and full-ranking evaluation need one query vector per history. ``model(ids)[:,
-1]`` runs every block on every position; ``model.query_embeddings(ids)`` runs the last block and
the final LayerNorm on the last position only. Both are timed alternately in one process (so
machine load affects them alike) under ``tf.function``, for the paper's d 50 / 2 blocks at
max_len 50 and 200, batch 1 and 64; the best of two rounds is printed.
"""

from __future__ import annotations

import argparse
import time

from sasrec_tf.testing.bench import set_tensorflow_environment

set_tensorflow_environment()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=25000)
    parser.add_argument("--repeats", type=int, default=200, help="calls per timing at batch 1 (a quarter at 64)")
    args = parser.parse_args(argv)

    import numpy as np
    import tensorflow as tf
    from sasrec_tf import SASRec, SASRecConfig

    rng = np.random.default_rng(0)
    print(f"{'max_len':>7} {'batch':>5} | {'full forward':>12} {'last only':>10} {'saved':>6}")
    for max_len in (50, 200):
        model = SASRec(SASRecConfig(max_len=max_len, hidden_units=50), num_items=args.items).build_weights()
        full = tf.function(lambda ids: model(ids, training=False)[:, -1, :])
        last = tf.function(lambda ids: model.query_embeddings(ids))
        for batch in (1, 64):
            ids = tf.constant(rng.integers(1, args.items + 1, size=(batch, max_len)), tf.int32)
            np.testing.assert_allclose(last(ids).numpy(), full(ids).numpy(), atol=1e-5)
            repeats = args.repeats if batch == 1 else max(1, args.repeats // 4)
            best = {"full": float("inf"), "last": float("inf")}
            for _ in range(2):
                for name, fn in (("full", full), ("last", last)):
                    start = time.perf_counter()
                    for _ in range(repeats):
                        fn(ids)
                    best[name] = min(best[name], (time.perf_counter() - start) / repeats * 1000)
            saved = 1 - best["last"] / best["full"]
            print(f"{max_len:>7} {batch:>5} | {best['full']:>9.2f} ms {best['last']:>7.2f} ms {saved:>6.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
