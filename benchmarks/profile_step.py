"""Where a training step's time goes: TensorFlow profiler, summarised by op type.

    python benchmarks/profile_step.py [--no-bucket] [--steps 50]

Trains the paper's configuration on the generated Games-shaped log (as train_throughput.py)
under ``tf.profiler``, then prints the top TensorFlow op types by self time on the host. Needs
the ``xprof`` package to summarise (``pip install xprof``; not a dependency of the library);
without it, the trace is left in ``--logdir`` for TensorBoard's profile tab.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from pathlib import Path

from sasrec_tf.testing.bench import benchmark_log, set_tensorflow_environment

set_tensorflow_environment()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-bucket", dest="bucket", action="store_false", default=True)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--logdir", default="/tmp/sasrec_profile")
    args = parser.parse_args(argv)

    import tensorflow as tf

    import sasrec_tf
    from sasrec_tf import training
    from sasrec_tf.data import training_dataset

    data = benchmark_log()  # train_throughput.py's default: the generated Games-shaped log, seed 0
    sequences, num_items = data.sequences, data.num_items
    config = sasrec_tf.SASRecConfig(dropout_rate=0.5)
    dataset = training_dataset(sequences, num_items, config.max_len, config.batch_size,
                               bucket_by_length=args.bucket).repeat()
    model = training.build_model(config, num_items)
    model.fit(dataset, epochs=1, steps_per_epoch=10, verbose=0)  # trace and warm up
    tf.profiler.experimental.start(args.logdir)
    model.fit(dataset, epochs=1, steps_per_epoch=args.steps, verbose=0)
    tf.profiler.experimental.stop()

    try:
        from xprof.convert import raw_to_tool_data
    except ImportError:
        print(f"trace written to {args.logdir}; install xprof to summarise it here")
        return 0
    xspaces = sorted(Path(args.logdir).rglob("*.xplane.pb"), key=os.path.getmtime)[-1:]
    data, _ = raw_to_tool_data.xspace_to_tool_data([str(p) for p in xspaces], "framework_op_stats", {})
    table = json.loads(data)[0]  # a Google DataTable: column ids, then rows of cells
    columns = [column["id"] for column in table["cols"]]
    by_type: dict[str, float] = defaultdict(float)
    for row in table["rows"]:
        cells = dict(zip(columns, (cell.get("v") if cell else None for cell in row["c"])))
        if cells["host_or_device"] == "Host" and cells["type"] != "IDLE":
            by_type[cells["type"]] += float(cells["total_self_time"])
    total = sum(by_type.values())
    print(f"host self time over {args.steps} steps: {total / 1e3:.0f} ms ({total / 1e3 / args.steps:.2f} ms/step)")
    print(f"{'op type':<40}{'ms/step':>10}{'share':>8}")
    for op, us in sorted(by_type.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"{op:<40}{us / 1e3 / args.steps:>10.3f}{us / total:>8.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
