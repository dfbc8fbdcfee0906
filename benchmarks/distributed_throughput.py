"""Training throughput with one worker versus two workers (MultiWorkerMirroredStrategy) on this machine.

Runs the same training (same global batch) three ways and reports sequences/s:

* ``default``   -- one process, no strategy (the baseline);
* ``1 worker``  -- one process under MultiWorkerMirroredStrategy (a cluster of one);
* ``2 workers`` -- two processes on 127.0.0.1, each training half of every global batch and
  all-reducing the gradients over gRPC.

On a machine with two CPU cores two workers cannot be faster than one: each worker gets one core
instead of two, and every step adds an all-reduce of all gradients through the loopback network.
The point of running it here is that distributed training works; its speed-up needs one machine
(or GPU) per worker.

    python benchmarks/distributed_throughput.py                     # in-memory input, defaults
    python benchmarks/distributed_throughput.py --input tfrecord    # read sharded TFRecord files
    python benchmarks/distributed_throughput.py --threads 1         # one TF thread pool per worker

Each process trains ``--warmup`` steps (not timed; the first one traces the step), then
``--steps`` timed steps; sequences/s = global batch x timed steps / their wall time, on the chief.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sasrec_tf.testing.bench import benchmark_log, set_tensorflow_environment

set_tensorflow_environment()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=20000)
    p.add_argument("--items", type=int, default=10000)
    p.add_argument("--mean-length", type=float, default=9.3)
    p.add_argument("--max-len", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=128, help="global batch (all workers together)")
    p.add_argument("--hidden-units", type=int, default=50)
    p.add_argument("--num-blocks", type=int, default=2)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--threads", type=int, default=0, help="intra/inter-op threads per process (0: TF default)")
    p.add_argument("--input", choices=("memory", "tfrecord"), default="memory")
    p.add_argument("--modes", default="default,1,2", help="comma-separated: default, 1 (worker), 2 (workers)")
    p.add_argument("--timeout", type=float, default=600, help="seconds per cluster run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: mode:result_dir:shard_dir
    return p.parse_args(argv)


def _sequences(args):
    return benchmark_log(num_users=args.users, num_items=args.items, mean_length=args.mean_length, seed=args.seed)


def run_worker(args) -> None:
    """Train and time one process (of a cluster, or alone with mode 'default')."""
    mode, result_dir, shard_dir = args.worker.split(":", 2)
    import sasrec_tf  # noqa: F401
    from sasrec_tf import distribute

    strategy = distribute.make_strategy("default" if mode == "default" else "multi_worker")
    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from sasrec_tf import SASRecConfig, training
    from sasrec_tf.data import training_dataset
    from sasrec_tf.data.tfrecord import ShardedSequences
    from sasrec_tf.testing.clock import StepClock

    config = SASRecConfig(max_len=args.max_len, hidden_units=args.hidden_units, num_blocks=args.num_blocks,
                          batch_size=args.batch_size, seed=args.seed)
    data = _sequences(args) if args.input == "memory" else None
    num_items = data.num_items if data is not None else ShardedSequences(shard_dir).num_items
    model = training.build_model(config, num_items, strategy=strategy)
    if args.input == "memory":
        dataset = training_dataset(data.sequences, num_items, config.max_len, config.batch_size,
                                   seed=config.seed).repeat()
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        dataset = dataset.with_options(options)
    else:
        dataset = strategy.distribute_datasets_from_function(
            ShardedSequences(shard_dir).dataset_fn(config.max_len, config.batch_size, seed=config.seed))

    clock = StepClock()
    started = time.perf_counter()
    model.fit(dataset, epochs=1, steps_per_epoch=args.warmup + args.steps, callbacks=[clock], verbose=0)
    ends = clock.step_ends
    timed = ends[-1] - ends[args.warmup - 1]
    result = {
        "mode": mode, "worker": distribute.worker_index(strategy), "workers": distribute.num_workers(strategy),
        "replicas": strategy.num_replicas_in_sync, "timed_steps": args.steps,
        "sequences_per_s": round(args.batch_size * args.steps / timed, 1),
        "ms_per_step": round(1000 * timed / args.steps, 1),
        "first_steps_s": round(ends[args.warmup - 1] - started, 1),
    }
    Path(result_dir, f"result-{mode}-{result['worker']}.json").write_text(json.dumps(result))


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        run_worker(args)
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="sasrec-dist-bench-"))
    try:
        return _compare(args, argv, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _compare(args, argv, workdir: Path) -> int:
    from sasrec_tf.testing import run_local_cluster

    shard_dir = workdir / "shards"
    if args.input == "tfrecord":
        from sasrec_tf.data.tfrecord import write_shards

        write_shards(_sequences(args), shard_dir, num_shards=8)
    forwarded = list(argv if argv is not None else sys.argv[1:])
    rows = []
    for mode in args.modes.split(","):
        count = 1 if mode in ("default", "1") else int(mode)
        command = [sys.executable, str(Path(__file__).resolve()), *forwarded, "--worker", f"{mode}:{workdir}:{shard_dir}"]
        started = time.perf_counter()
        if mode == "default":
            run = subprocess.run(command, timeout=args.timeout, env={**os.environ, "TF_CONFIG": ""},
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            outputs = [] if run.returncode == 0 else [run.stdout[-3000:]]
        else:
            runs = run_local_cluster(command, count, timeout=args.timeout)
            outputs = [r.output[-3000:] for r in runs if r.returncode != 0]
        if outputs:
            print(f"mode {mode} failed:\n" + "\n".join(outputs), file=sys.stderr)
            return 1
        reports = [json.loads(p.read_text()) for p in sorted(workdir.glob(f"result-{mode}-*.json"))]
        chief = min(reports, key=lambda r: r["worker"])
        rows.append({"mode": "default (no strategy)" if mode == "default" else f"{count} worker(s)",
                     "processes": count, "global_batch": args.batch_size,
                     "sequences_per_s": chief["sequences_per_s"], "ms_per_step": chief["ms_per_step"],
                     "per_worker_sequences_per_s": [r["sequences_per_s"] for r in reports],
                     "wall_s": round(time.perf_counter() - started, 1)})
    setup = {"users": args.users, "items": args.items, "max_len": args.max_len, "hidden_units": args.hidden_units,
             "num_blocks": args.num_blocks, "input": args.input, "threads": args.threads or "default",
             "cpu_count": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2)}
    if args.json:
        print(json.dumps({"setup": setup, "results": rows}))
    else:
        print(json.dumps(setup))
        for row in rows:
            print(f"{row['mode']:>24}: {row['sequences_per_s']:>9.1f} sequences/s  {row['ms_per_step']:>7.1f} ms/step"
                  f"  (global batch {row['global_batch']}, run {row['wall_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
