"""Catalogue scale: train with sampled negatives and export with a very large item catalogue.

    python benchmarks/catalog_scale.py --items 1000000 --users 50000 --steps 50

Generates a log over ``--items`` items, trains ``--steps`` steps of the paper's configuration
(sampled negatives: no ``[B, T, N]`` logits), saves the model directory, exports the SavedModel
for TensorFlow Serving, answers one request through it, and prints time, peak memory (RSS of
this process) and the sizes on disk.

    python benchmarks/catalog_scale.py --items 1000000 --hidden-units 64 --steps 50 --ps 2 --workers 2

``--ps N`` trains the same under ``--strategy parameter_server`` on a loopback cluster of this
machine (a chief, ``--workers`` workers, ``N`` ps tasks; the item table in N shards) and prints the
peak RSS of every process: the chief trains, gathers the table (``unsharded_copy``) and exports.

The export's own peak is hidden behind training's in one process (RSS peaks only grow), so the
export is then repeated in a fresh process (``--export-from MODEL_DIR`` runs just that): its RSS
after the imports, its peak, the item table's size, and what the peak adds to imports + table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sasrec_tf.testing.bench import peak_rss_mib, set_tensorflow_environment

set_tensorflow_environment()


def dir_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--hidden-units", type=int, default=50, help="d")
    parser.add_argument("--ps", type=int, default=0, help="parameter-server tasks (0: one process)")
    parser.add_argument("--workers", type=int, default=2, help="workers, with --ps")
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument("--out", help="working directory (default: a temporary one, removed)")
    parser.add_argument("--export-from", metavar="MODEL_DIR",
                        help="only export this model directory (into --out or a temporary directory) and report")
    parser.add_argument("--no-fresh-export", action="store_true", help="skip the export in a fresh process")
    parser.add_argument("--read-from", metavar="MODEL_DIR",
                        help="only read MODEL_DIR/model.keras in this process, with --reader, and report")
    parser.add_argument("--reader", choices=("ours", "keras"), default="ours",
                        help="--read-from: sasrec_tf.artifacts.load_model_file or keras.models.load_model")
    args = parser.parse_args(argv)
    if args.export_from:
        return _export_only(Path(args.export_from), args.out)
    if args.read_from:
        return _read_only(Path(args.read_from), args.reader)
    if args.ps and "TF_CONFIG" not in os.environ:
        return _cluster(args)
    if args.ps:  # a task of that cluster: the ps tasks and workers serve at once (no data)
        from sasrec_tf import distribute, parameter_server

        if parameter_server.role(distribute.read_tf_config()) != "chief":
            parameter_server.serve(distribute.read_tf_config())

    import numpy as np
    import tensorflow as tf

    from sasrec_tf import SASRecConfig, artifacts, training
    from sasrec_tf.data import ItemVocabulary, training_dataset
    from sasrec_tf.evaluation import training_item_counts
    from sasrec_tf.export import export_saved_model

    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 30, size=args.users)
    # Zipf-like popularity over the whole catalogue, so that most items occur.
    sequences = [rng.integers(1, args.items + 1, size=n) for n in lengths]
    vocab = ItemVocabulary([f"item{i}" for i in range(1, args.items + 1)])
    config = SASRecConfig(dropout_rate=0.5, hidden_units=args.hidden_units, optimizer=args.optimizer)
    print(f"{args.items:,} items, {args.users:,} users, {int(lengths.sum()):,} interactions; "
          f"peak RSS after data {peak_rss_mib():.0f} MiB")

    started = time.perf_counter()
    strategy = None
    if args.ps:
        strategy = distribute.make_strategy("parameter_server")
    model = training.build_model(config, args.items, strategy=strategy)

    def make(input_context=None):
        return training_dataset(sequences, args.items, config.max_len, config.batch_size,
                                bucket_by_length=True).repeat()

    from sasrec_tf._compat import keras

    dataset = keras.utils.experimental.DatasetCreator(make) if args.ps else make()
    model.fit(dataset, epochs=1, steps_per_epoch=args.steps, verbose=0)
    train_s = time.perf_counter() - started
    print(f"trained {args.steps} steps in {train_s:.1f} s ({train_s / args.steps * 1000:.0f} ms/step incl. "
          f"tracing); peak RSS {peak_rss_mib():.0f} MiB", flush=True)
    if args.ps:
        started = time.perf_counter()
        model = parameter_server.unsharded_copy(model)
        print(f"gathered the {parameter_server.table_shards(model)[0]['shape']} table on the chief in "
              f"{time.perf_counter() - started:.1f} s; peak RSS {peak_rss_mib():.0f} MiB", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.out or tmp)
        started = time.perf_counter()
        artifacts.save_trained(work / "model", model, vocab, item_counts=training_item_counts(sequences, args.items))
        save_s = time.perf_counter() - started
        started = time.perf_counter()
        version = export_saved_model(work / "model", work / "export", "sasrec", k=10)
        export_s = time.perf_counter() - started
        print(f"model directory {dir_mib(work / 'model'):.0f} MiB (saved in {save_s:.1f} s); SavedModel "
              f"{dir_mib(version):.0f} MiB (exported in {export_s:.1f} s); peak RSS {peak_rss_mib():.0f} MiB")
        loaded = tf.saved_model.load(str(version))
        history = tf.constant([["", "item17", "item4242", "item99"]])
        result = loaded.signatures["serving_default"](history=history)
        print("one request:", [x.decode() for x in result["item_ids"].numpy()[0][:5]], "...")
        if not args.ps and not args.no_fresh_export:
            del loaded, result
            command = [sys.executable, os.path.abspath(__file__), "--export-from", str(work / "model"),
                       "--out", str(work / "fresh")]
            subprocess.run(command, check=True)
    print(f"final peak RSS {peak_rss_mib():.0f} MiB")
    return 0


def _status_mib(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process from ``/proc/self/status``, MiB."""
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":")) / 1024


def _export_only(model_dir: Path, out: str | None) -> int:
    """Export ``model_dir`` in this (fresh) process; print RSS after imports, the peak, and the table."""
    import json

    import tensorflow as tf  # noqa: F401  (imported before the baseline is taken)

    from sasrec_tf.export import export_saved_model

    imports = _status_mib("VmRSS")
    config = json.loads((model_dir / "config.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        version = export_saved_model(model_dir, Path(out or tmp), "sasrec", k=10)
        export_s = time.perf_counter() - started
        peak = _status_mib("VmHWM")  # not ru_maxrss: Linux carries that over from the parent across exec
        table_mib = (config["num_items"] + 1) * config["sasrec_config"]["hidden_units"] * 4 / 2**20
        print(f"fresh export: {export_s:.1f} s; SavedModel {dir_mib(version):.0f} MiB; RSS after imports {imports:.0f} "
              f"MiB, peak {peak:.0f} MiB; item table {table_mib:.0f} MiB; peak - imports - table "
              f"{peak - imports - table_mib:.0f} MiB", flush=True)
    return 0


def _read_only(model_dir: Path, reader: str) -> int:
    """Read ``model_dir/model.keras`` in this (fresh) process; print the seconds and the peak RSS."""
    import tensorflow as tf  # noqa: F401  (imported before the baseline is taken)

    from sasrec_tf._compat import keras
    from sasrec_tf.artifacts import load_model_file

    path = model_dir / "model.keras"
    imports = _status_mib("VmRSS")
    started = time.perf_counter()
    load_model_file(path) if reader == "ours" else keras.models.load_model(path, compile=False)
    print(f"read {path} ({path.stat().st_size / 2**20:.0f} MiB) with {reader}: {time.perf_counter() - started:.1f} s; "
          f"RSS after imports {imports:.0f} MiB, peak {_status_mib('VmHWM'):.0f} MiB", flush=True)
    return 0


def _cluster(args) -> int:
    """Run this script as every task of a loopback parameter-server cluster; report each one's peak RSS."""
    from sasrec_tf.testing.cluster import run_parameter_server_cluster

    argv = [sys.executable, os.path.abspath(__file__), *sys.argv[1:]]
    run = run_parameter_server_cluster(argv, args.workers, args.ps, timeout=3600,
                                       env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    print(run.chief.output[-4000:])
    for kind, tasks in (("worker", run.workers), ("ps", run.ps)):
        for task in tasks:
            print(f"{kind} {task.index}: peak RSS {task.peak_rss_mib or float('nan'):.0f} MiB")
    return 0 if run.chief.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
