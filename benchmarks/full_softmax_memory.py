"""Full softmax over the catalogue: materialised ``[M, N + 1]`` logits against item chunks.

    python benchmarks/full_softmax_memory.py
    python benchmarks/full_softmax_memory.py --items 12101 --items 100000 --chunk 8192 --chunk 0 --steps 3

For each catalogue size ``N`` and chunk size (``0`` = ``softmax_chunk_size=None``, today's
materialised logits), a fresh subprocess times the loss and its gradients (queries and item
table) of one batch of ``--positions`` targets (128 x 50 by default) in a ``tf.function``:
:func:`sasrec_tf.losses.full_softmax_crossentropy` on ``queries @ table^T``, or
:func:`sasrec_tf.losses.chunked_full_softmax_crossentropy`. It prints ms per step, the largest
tensor of the step (the logits or one chunk's, in MiB, counted from the shapes), the process's
peak resident memory (``VmHWM``) and that peak less the resident memory before the first step
(what the step itself adds: TensorFlow's per-device memory counters do not work on CPU), and the
loss (equal across chunk sizes up to float rounding). Runs whose predicted peak (three
``[M, N + 1]`` float32 tensors: logits, softmax, gradient) is over ``--max-gib`` are skipped.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from sasrec_tf.testing.bench import set_tensorflow_environment

set_tensorflow_environment()


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(items: int, chunk: int, positions: int, dim: int, steps: int, seed: int) -> dict:
    """One measurement, in this process: ms per step, RSS before and at peak, the loss."""
    import numpy as np
    import tensorflow as tf

    from sasrec_tf import losses

    rng = np.random.default_rng(seed)
    queries = tf.Variable(rng.normal(scale=0.1, size=(positions, dim)).astype(np.float32))
    table = tf.Variable(rng.normal(scale=0.1, size=(items + 1, dim)).astype(np.float32))
    labels = tf.constant(rng.integers(1, items + 1, size=positions))

    def loss_fn():
        if chunk:
            return losses.chunked_full_softmax_crossentropy(queries, table, labels, chunk)
        return losses.full_softmax_crossentropy(tf.matmul(queries, table, transpose_b=True), labels)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = loss_fn()
        grads = tape.gradient(loss, [queries, table])
        return loss, [tf.convert_to_tensor(g) for g in grads]

    step.get_concrete_function()
    before = _status_kib("VmRSS")
    loss, _ = step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    ms = (time.perf_counter() - start) / steps * 1000
    return {"ms": ms, "rss_before_kib": before, "peak_kib": _status_kib("VmHWM"), "loss": float(loss)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, action="append", help="catalogue sizes (default 12000 100000 500000)")
    parser.add_argument("--chunk", type=int, action="append", help="chunk sizes, 0 = materialised (default 8192 0)")
    parser.add_argument("--positions", type=int, default=128 * 50, help="target positions M of a batch")
    parser.add_argument("--dim", type=int, default=50)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--max-gib", type=float, default=3.0, help="skip runs predicted to need more")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", nargs=2, type=int, metavar=("ITEMS", "CHUNK"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child, args.positions, args.dim, args.steps, args.seed)))
        return 0

    mib = 2**20
    print(f"M={args.positions} d={args.dim} steps={args.steps}")
    print(f"{'items':>7} {'chunk':>6} | {'ms/step':>8} {'largest MiB':>11} {'peak RSS MiB':>12} "
          f"{'step adds MiB':>13} {'loss':>8}")
    for items in args.items or [12_000, 100_000, 500_000]:
        for chunk in args.chunk or [8192, 0]:
            columns = min(chunk, items + 1) if chunk else items + 1
            largest = args.positions * columns * 4 / mib
            label = chunk or "None"
            predicted = (3 * args.positions * (items + 1) * 4 if not chunk
                         else 3 * args.positions * columns * 4 + 4 * (items + 1 + columns) * args.dim * 4)
            if predicted / 2**30 > args.max_gib:
                print(f"{items:>7} {label:>6} | {'skipped':>8} {largest:>11.0f} (predicted {predicted / 2**30:.1f} GiB "
                      f"> --max-gib)")
                continue
            command = [sys.executable, __file__, "--child", str(items), str(chunk), "--positions", str(args.positions),
                       "--dim", str(args.dim), "--steps", str(args.steps), "--seed", str(args.seed)]
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            result = json.loads(out.strip().splitlines()[-1])
            peak, adds = result["peak_kib"] / 1024, (result["peak_kib"] - result["rss_before_kib"]) / 1024
            print(f"{items:>7} {label:>6} | {result['ms']:>8.0f} {largest:>11.0f} {peak:>12.0f} {adds:>13.0f} "
                  f"{result['loss']:>8.4f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
