"""Training throughput of SASRec on this machine: sequences/s, tokens/s, ms/step, compile time, memory.

Default workload: a generated log of the shape of the paper's Amazon Games data (31,013 users,
23,715 items, 9.3 interactions per user on average) and the paper's configuration (d = 50, 2
blocks, 1 head, max_len 50, batch 128, dropout 0.5, one negative per position). Or pass a real
log with ``--data PATH --format F``.

    python benchmarks/train_throughput.py                      # defaults as above
    python benchmarks/train_throughput.py --max-len 200 --no-bucket --xla
    python benchmarks/train_throughput.py --pipeline-only     # the input pipeline alone

Each run trains ``--warmup`` steps (not timed, except the first step, reported as trace/compile
time), then times ``--steps`` steps one by one. ``sequences/s`` counts training windows (one per
user per epoch with the paper's windows); ``tokens/s`` counts real (non-padding) target
positions.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from sasrec_tf.testing.bench import (GAMES_ITEMS, GAMES_MEAN_LENGTH, GAMES_USERS, benchmark_log, peak_rss_mib,
                                     set_tensorflow_environment)

set_tensorflow_environment()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="interaction log (default: generated Games-shaped log)")
    p.add_argument("--format", default="s3rec")
    p.add_argument("--users", type=int, default=GAMES_USERS)
    p.add_argument("--items", type=int, default=GAMES_ITEMS)
    p.add_argument("--mean-length", type=float, default=GAMES_MEAN_LENGTH)
    p.add_argument("--max-len", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--hidden-units", type=int, default=50)
    p.add_argument("--num-blocks", type=int, default=2)
    p.add_argument("--num-heads", type=int, default=1)
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--num-negatives", type=int, default=1)
    p.add_argument("--bucket", dest="bucket", action="store_true", default=True,
                   help="batch windows of similar length, cut to the batch's longest (default)")
    p.add_argument("--no-bucket", dest="bucket", action="store_false")
    p.add_argument("--xla", action="store_true", help="compile the train step with XLA (jit_compile)")
    p.add_argument("--fused-attention", action=argparse.BooleanOptionalAction, default=True,
                   help="SASRecConfig.fused_attention (default: on, the model default)")
    p.add_argument("--optimizer", default="adam",
                   help="SASRecConfig.optimizer: adam (default), lazy_adam, keras_adam")
    p.add_argument("--threads", type=int, default=0, help="intra/inter-op threads (0: TensorFlow's default)")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--pipeline-only", action="store_true", help="time the tf.data pipeline alone")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON line instead of the table")
    return p.parse_args(argv)


def load_sequences(args):
    data = benchmark_log(args.data, args.format, num_users=args.users, num_items=args.items,
                         mean_length=args.mean_length, seed=args.seed)
    return data.sequences, data.num_items


def main(argv=None) -> int:
    args = parse_args(argv)
    import numpy as np
    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    import sasrec_tf
    from sasrec_tf import training
    from sasrec_tf.data import training_dataset
    from sasrec_tf.testing.clock import StepClock

    sequences, num_items = load_sequences(args)
    config = sasrec_tf.SASRecConfig(max_len=args.max_len, hidden_units=args.hidden_units,
                                    num_blocks=args.num_blocks, num_heads=args.num_heads,
                                    dropout_rate=args.dropout, batch_size=args.batch_size,
                                    num_negatives=args.num_negatives, seed=args.seed,
                                    optimizer=args.optimizer, fused_attention=args.fused_attention)
    dataset = training_dataset(sequences, num_items, config.max_len, config.batch_size,
                               num_negatives=config.num_negatives, seed=config.seed,
                               bucket_by_length=args.bucket).repeat()
    total = args.warmup + args.steps
    result = {"users": len(sequences), "items": num_items, "max_len": args.max_len,
              "batch_size": args.batch_size, "bucket": args.bucket, "xla": args.xla,
              "fused_attention": args.fused_attention,
              "optimizer": args.optimizer,
              "threads": args.threads or "default"}

    if args.pipeline_only:
        iterator = iter(dataset)
        for _ in range(args.warmup):
            next(iterator)
        started, cpu = time.perf_counter(), time.process_time()
        for _ in range(args.steps):
            next(iterator)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        result["pipeline_sequences_per_s"] = round(args.steps * args.batch_size / elapsed, 1)
        # CPU time of every thread of the process: what the pipeline takes from the training step
        # on a machine with few cores (compare with "cpu ms/step" of a training run).
        result["pipeline cpu ms/batch"] = round(1000 * cpu / args.steps, 2)
        print(json.dumps(result) if args.json else "\n".join(f"{k:>28}: {v}" for k, v in result.items()))
        return 0

    model = training.build_model(config, num_items)
    if args.xla:
        model.compile(optimizer=training.make_optimizer(config), jit_compile=True)

    # Count real target positions per batch from the same pipeline (same seed → same batches).
    tokens = [int(np.count_nonzero(b["positives"])) for b in dataset.take(total).as_numpy_iterator()]
    widths = [b["positives"].shape[1] for b in dataset.take(50).as_numpy_iterator()]
    clock = StepClock()  # end-to-end step times: compute, waiting for input and callback overhead
    wall = time.perf_counter()
    model.fit(dataset, epochs=1, steps_per_epoch=total, callbacks=[clock], verbose=0)
    wall = time.perf_counter() - wall
    steps, cpu_steps = clock.step_seconds, clock.cpu_step_seconds
    timed = np.array(steps[args.warmup:])
    ms = timed * 1000
    result.update({
        "first_step_s (trace/compile)": round(steps[0], 2),
        "timed steps": len(timed),
        "ms/step median": round(float(np.median(ms)), 2),
        "ms/step p10-p90": f"{np.percentile(ms, 10):.1f}-{np.percentile(ms, 90):.1f}",
        "cpu ms/step mean (all threads, pipeline included)": round(1000 * float(np.mean(cpu_steps[args.warmup:])), 2),
        "sequences/s": round(args.batch_size / float(np.median(timed)), 1),
        "sequences/s (mean over timed steps)": round(args.batch_size * len(timed) / float(timed.sum()), 1),
        "tokens/s": round(sum(tokens[args.warmup:]) / float(timed.sum()), 1),
        "mean batch width": round(float(np.mean(widths)), 1),
        "peak RSS MiB": round(peak_rss_mib(), 1),
        "wall_s (incl. warm-up)": round(wall, 1),
    })
    print(json.dumps(result) if args.json else "\n".join(f"{k:>36}: {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
