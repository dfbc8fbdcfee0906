"""Distributed training: strategies by name, batch sizes, and two workers training as one.

The key test starts two worker processes on 127.0.0.1 (free ports, bounded time, always cleaned
up) that train together through ``MultiWorkerMirroredStrategy``; this file is also the workers'
program (``python tests/test_distribute.py worker ...``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# Small enough for two processes on two cores, large enough that the loss clearly falls.
WORKER_LOG = dict(num_users=240, num_items=80, mean_length=10, seed=11)
WORKER_CONFIG = dict(max_len=10, hidden_units=16, num_blocks=1, num_heads=1, dropout_rate=0.1,
                     batch_size=48, epochs=4, learning_rate=1e-2, seed=7)
TFRECORD_SHARDS = 4
TFRECORD_GLOBAL_BATCH = 40  # 20 per worker; 120 users per worker = 6 steps for one pass


# ============================================================================ the worker program
def _worker_main(out_dir: str, result_dir: str, shard_dir: str) -> None:
    """One worker of the cluster in TF_CONFIG: train, then report what the test checks."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import sasrec_tf  # noqa: F401  (selects Keras 2 first)
    from sasrec_tf import distribute

    # First, before TensorFlow runs anything. A long heartbeat timeout: on a crowded 2-core machine
    # (the suite's other worker beside this cluster) a live task once missed TensorFlow's 10 s.
    strategy = distribute.make_strategy("multi_worker", heartbeat_timeout_s=120)

    import tensorflow as tf

    from sasrec_tf import SASRecConfig, artifacts, training
    from sasrec_tf._compat import keras
    from sasrec_tf.data import build_sequences, generate_interactions, leave_one_out, pad_sequences
    from sasrec_tf.data.tfrecord import ShardedSequences

    index = distribute.worker_index(strategy)
    out, results = Path(out_dir), Path(result_dir)
    data = build_sequences(generate_interactions(**WORKER_LOG))
    split = leave_one_out(data)
    config = SASRecConfig(**WORKER_CONFIG)

    class Probe(keras.callbacks.Callback):
        """Per epoch, after BackupAndRestore's save: the loss and what the chief's backup holds."""

        def __init__(self, crash_after_epoch=None):
            super().__init__()
            self.crash_after_epoch = crash_after_epoch
            self.epochs = []

        def on_epoch_end(self, epoch, logs=None):
            chief = out / "backup" / "chief"
            self.epochs.append({"epoch": epoch, "loss": float(logs["loss"]),
                                "backup": sorted(p.name for p in chief.iterdir()) if chief.exists() else []})
            if epoch == self.crash_after_epoch:
                raise RuntimeError("simulated crash")

    # Train, "crash" on every worker after epoch 1, then resume in a fresh model from the backup.
    crashed = Probe(crash_after_epoch=1)
    try:
        training.fit(training.build_model(config, split.num_items, strategy=strategy), split, out_dir=out,
                     eval_every=1, max_eval_users=100, verbose=0, strategy=strategy, callbacks=[crashed])
        raise AssertionError("the simulated crash did not happen")
    except RuntimeError as err:
        assert "simulated crash" in str(err), err
    probe = Probe()
    model = training.build_model(config, split.num_items, strategy=strategy)
    history = training.fit(model, split, out_dir=out, eval_every=1, max_eval_users=100, verbose=0,
                           strategy=strategy, callbacks=[probe])

    # The sharded input under the real strategy: each worker reads only its own files.
    shards = ShardedSequences(shard_dir)
    dataset_fn = shards.dataset_fn(config.max_len, TFRECORD_GLOBAL_BATCH, shuffle=True, seed=3,
                                   leave_one_out=True)
    iterator = iter(strategy.distribute_datasets_from_function(dataset_fn))
    steps = shards.num_windows(config.max_len, leave_one_out=True) // TFRECORD_GLOBAL_BATCH
    seen_users = []
    for _ in range(steps):
        batch = next(iterator)
        for local in strategy.experimental_local_results(batch["user_ids"]):
            seen_users.extend(int(u) for u in local.numpy())
    # ... and a short fit on it, continuing the same model.
    sharded_history = training.fit(model, split, epochs=1, steps_per_epoch=3, eval_every=1, max_eval_users=50,
                                   verbose=0, strategy=strategy, dataset=dataset_fn)

    probe_inputs = pad_sequences(split.test_inputs[:32], config.max_len)
    predictions = model.query_embeddings(tf.constant(probe_inputs)).numpy()
    np.savez(results / f"worker{index}.npz", *model.get_weights(), predictions=predictions, inputs=probe_inputs)
    # Every worker saves (saving synchronises variables across workers); only the chief's copy stays.
    with distribute.writable_dir(out / "model", strategy) as target:
        artifacts.save_trained(target, model, data.vocab)
    report = {
        "index": index,
        "is_chief": distribute.is_chief(strategy),
        "num_workers": distribute.num_workers(strategy),
        "replicas": strategy.num_replicas_in_sync,
        "pid": os.getpid(),
        "heartbeat_timeout_ms": _heartbeat_timeout_ms(),
        "loss": history.history["loss"],
        "val_ndcg": history.history.get("val_ndcg@10", []),
        "sharded_loss": sharded_history.history["loss"],
        "epochs": crashed.epochs + probe.epochs,
        "tfrecord_users": seen_users,
    }
    (results / f"worker{index}.json").write_text(json.dumps(report))


def _heartbeat_timeout_ms() -> int:
    """The heartbeat timeout of the coordination service this process runs under."""
    from tensorflow.python.eager import context

    return int(context.context().config.experimental.coordination_config.heartbeat_timeout_in_ms)


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "worker":
    _worker_main(*sys.argv[2:])
    sys.exit(0)


# ============================================================================ tests
import tensorflow as tf  # noqa: E402

from sasrec_tf import SASRecConfig, distribute, training  # noqa: E402
from sasrec_tf._compat import keras  # noqa: E402
from sasrec_tf.data import build_sequences, generate_interactions, leave_one_out  # noqa: E402
from sasrec_tf.testing import free_ports, run_local_cluster  # noqa: E402


def test_tf_config_names_every_task_and_the_chief_is_worker_zero():
    config = json.loads(distribute.tf_config(["127.0.0.1:1000", "127.0.0.1:1001"], 1))
    assert config == {"cluster": {"worker": ["127.0.0.1:1000", "127.0.0.1:1001"]},
                      "task": {"type": "worker", "index": 1}}
    assert distribute.read_tf_config({"TF_CONFIG": json.dumps(config)}) == config
    with pytest.raises(ValueError, match="out of range"):
        distribute.tf_config(["a:1"], 1)


@pytest.mark.parametrize("text, message", [
    ("{not json", "not valid JSON"),
    ('{"task": {"type": "worker", "index": 0}}', "cluster"),
    ('{"cluster": {"worker": ["a:1"]}}', "task"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}', "not in the cluster"),
])
def test_invalid_tf_config_is_rejected_with_the_reason(text, message):
    with pytest.raises(ValueError, match=message):
        distribute.read_tf_config({"TF_CONFIG": text})
    assert distribute.read_tf_config({}) is None


def test_strategies_by_name_and_unknown_names_rejected():
    assert distribute.make_strategy("default") is tf.distribute.get_strategy()
    mirrored = distribute.make_strategy("mirrored", devices=["/cpu:0"])
    assert isinstance(mirrored, tf.distribute.MirroredStrategy)
    assert distribute.is_chief(mirrored) and distribute.num_workers(mirrored) == 1
    assert distribute.worker_index(mirrored) == 0
    with pytest.raises(ValueError, match="unknown strategy"):
        distribute.make_strategy("central_storage")
    with pytest.raises(ValueError, match="needs TF_CONFIG"):  # the chief of a parameter-server cluster
        distribute.make_strategy("parameter_server")
    for bad in (0, -1, float("nan")):  # refused before any strategy is built
        with pytest.raises(ValueError, match="heartbeat_timeout_s must be a positive"):
            distribute.make_strategy("multi_worker", heartbeat_timeout_s=bad)


def test_the_cli_refuses_a_heartbeat_timeout_without_multi_worker(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("user,item,timestamp\n")
    env = {key: value for key, value in os.environ.items() if key != "TF_CONFIG"}
    done = subprocess.run([sys.executable, "-m", "sasrec_tf.cli", "train", "--data", str(log), "--out",
                           str(tmp_path / "o"), "--heartbeat-timeout", "60"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "--heartbeat-timeout needs --strategy multi_worker" in done.stderr
    assert "Traceback" not in done.stderr


def test_global_and_per_replica_batch_sizes_are_explicit():
    class TwoReplicas:
        num_replicas_in_sync = 2

    assert distribute.global_batch_size(TwoReplicas(), global_batch=128) == 128
    assert distribute.global_batch_size(TwoReplicas(), per_replica=64) == 128
    assert distribute.per_replica_batch_size(128, TwoReplicas()) == 64
    with pytest.raises(ValueError, match="exactly one"):
        distribute.global_batch_size(TwoReplicas(), global_batch=128, per_replica=64)
    with pytest.raises(ValueError, match="smaller than"):
        distribute.global_batch_size(TwoReplicas(), global_batch=1)


def test_writable_dir_is_the_real_directory_on_the_chief(tmp_path):
    with distribute.writable_dir(tmp_path / "model") as target:
        assert target == tmp_path / "model" and target.is_dir()


def test_free_ports_are_distinct_and_bindable():
    import socket

    ports = free_ports(3)
    assert len(set(ports)) == 3
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("simulated crash")


def test_training_under_mirrored_strategy_validates_checkpoints_and_resumes(tmp_path):
    split = leave_one_out(build_sequences(generate_interactions(num_users=200, num_items=60, mean_length=8, seed=2)))
    config = SASRecConfig(max_len=8, hidden_units=16, num_blocks=1, batch_size=32, epochs=4, seed=3)
    strategy = distribute.make_strategy("mirrored", devices=["/cpu:0"])
    model = training.build_model(config, split.num_items, strategy=strategy)
    assert model.distribute_strategy is strategy
    with pytest.raises(RuntimeError, match="simulated crash"):
        training.fit(model, split, out_dir=tmp_path, eval_every=1, verbose=0, strategy=strategy,
                     callbacks=[_Interrupt()])
    resumed = training.build_model(config, split.num_items, strategy=strategy)
    history = training.fit(resumed, split, out_dir=tmp_path, eval_every=1, verbose=0, strategy=strategy,
                           per_replica_batch_size=32)
    assert len(history.history["loss"]) == 2, "epochs 0 and 1 were done before the crash"
    assert len(history.history["val_ndcg@10"]) == 2

    with pytest.raises(ValueError, match="not built under this strategy"):
        training.fit(training.build_model(config, split.num_items), split, epochs=1, verbose=0, strategy=strategy)


@pytest.fixture(scope="module")
def two_worker_run(tmp_path_factory):
    """Two MultiWorkerMirroredStrategy workers on 127.0.0.1, sharing one output directory."""
    from sasrec_tf.data.tfrecord import write_shards

    root = tmp_path_factory.mktemp("multi_worker")
    out, results, shards = root / "out", root / "results", root / "shards"
    results.mkdir()
    write_shards(build_sequences(generate_interactions(**WORKER_LOG)), shards, TFRECORD_SHARDS)
    # The workers run this file as a script: put this checkout first so they import its sasrec_tf.
    repo = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}
    workers = run_local_cluster(
        [sys.executable, str(Path(__file__).resolve()), "worker", str(out), str(results), str(shards)],
        2, timeout=150, env=env,
    )
    for worker in workers:
        assert worker.returncode == 0, f"worker {worker.index} failed ({worker.returncode}):\n{worker.output[-6000:]}"
    reports = [json.loads((results / f"worker{i}.json").read_text()) for i in range(2)]
    arrays = [dict(np.load(results / f"worker{i}.npz")) for i in range(2)]
    return {"out": out, "reports": reports, "arrays": arrays, "shards": shards}


def test_two_workers_train_as_one_and_end_with_identical_weights(two_worker_run):
    first, second = two_worker_run["reports"]
    assert (first["num_workers"], first["replicas"], second["replicas"]) == (2, 2, 2)
    assert first["is_chief"] and not second["is_chief"]
    assert first["heartbeat_timeout_ms"] == second["heartbeat_timeout_ms"] == 120_000  # make_strategy's option
    weights = [[a[k] for k in sorted(a, key=_arr_order) if k.startswith("arr_")] for a in two_worker_run["arrays"]]
    assert len(weights[0]) == len(weights[1]) > 0
    for mine, theirs in zip(*weights):
        np.testing.assert_array_equal(mine, theirs)
    losses = [epoch["loss"] for epoch in first["epochs"]]
    assert losses == [epoch["loss"] for epoch in second["epochs"]], "the logged loss is the global one"
    assert losses[-1] < 0.9 * losses[0], losses
    assert all(np.isfinite(first["sharded_loss"]))
    # The validation callback ran on both workers with the same weights: the same numbers.
    assert len(first["val_ndcg"]) == len(first["loss"]) and first["val_ndcg"] == second["val_ndcg"]


def test_workers_resume_from_the_chiefs_backup_after_a_crash(two_worker_run):
    for report in two_worker_run["reports"]:
        assert [epoch["epoch"] for epoch in report["epochs"]] == [0, 1, 2, 3], "resumed after epoch 1"
        assert len(report["loss"]) == 2


def test_only_the_chief_writes_logs_backups_and_the_model(two_worker_run):
    out = two_worker_run["out"]
    chief_pid = two_worker_run["reports"][0]["pid"]
    events = list((out / "logs").rglob("events.out.tfevents.*"))
    assert events and all(f".{chief_pid}." in path.name for path in events), events
    # The chief's backup held a checkpoint after every epoch; it is deleted when training ends.
    assert all("checkpoint" in epoch["backup"] for epoch in two_worker_run["reports"][0]["epochs"])
    assert not (out / "backup" / "chief").exists()
    assert not list(out.rglob("workertemp_*")), "non-chief temporary folders must be removed"
    assert (out / "model" / "model.keras").exists()


def test_the_chiefs_saved_model_reloads_with_the_same_weights_and_predictions(two_worker_run):
    from sasrec_tf.artifacts import load_trained

    chief = two_worker_run["arrays"][0]
    reloaded = load_trained(two_worker_run["out"] / "model").model
    for saved, trained in zip(reloaded.get_weights(), [chief[k] for k in sorted(chief, key=_arr_order)
                                                       if k.startswith("arr_")]):
        np.testing.assert_array_equal(saved, trained)
    predictions = reloaded.query_embeddings(tf.constant(chief["inputs"])).numpy()
    np.testing.assert_allclose(predictions, chief["predictions"], rtol=1e-5, atol=1e-6)


def test_sharded_input_under_the_strategy_splits_users_between_workers(two_worker_run):
    first, second = (set(r["tfrecord_users"]) for r in two_worker_run["reports"])
    assert len(first) == len(two_worker_run["reports"][0]["tfrecord_users"]), "no user twice in one pass"
    assert first and second and not first & second
    assert first | second == set(range(1, WORKER_LOG["num_users"] + 1))


def _arr_order(key: str) -> int:
    return int(key.split("_")[1]) if key.startswith("arr_") else -1


MIRRORED_STEP = """
import os, sys
import numpy as np
import tensorflow as tf
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)
import sasrec_tf
from sasrec_tf._compat import keras

batch = {"item_ids": np.array([[0, 1, 2, 3]] * 4, np.int32), "positives": np.array([[0, 2, 3, 4]] * 4, np.int32),
         "negatives": np.array([[[5], [6], [7], [8]]] * 4, np.int32), "user_ids": np.ones(4, np.int32)}
config = sasrec_tf.SASRecConfig(max_len=4, hidden_units=8, num_blocks=1, dropout_rate=0.0)

def one_sgd_step(strategy):
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = sasrec_tf.SASRec(config, num_items=10).build_weights()
        model.compile(optimizer=keras.optimizers.SGD(1.0))
    before = [w.numpy() for w in model.trainable_weights]
    model.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0)
    return [w.numpy() - b for w, b in zip(model.trainable_weights, before)]

single = one_sgd_step(tf.distribute.get_strategy())
mirrored = one_sgd_step(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
assert len(single) == len(mirrored)
for a, b in zip(single, mirrored):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
print("SAME_UPDATE")
"""


def test_mirrored_replicas_apply_the_same_update_as_one_device():
    """Each replica's loss is its batch mean and the optimizer sums replica gradients: the model
    must divide by the replica count, or every step is num_replicas times too large."""
    import subprocess

    repo = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "", "TF_USE_LEGACY_KERAS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-c", MIRRORED_STEP], capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode == 0 and "SAME_UPDATE" in result.stdout, result.stderr[-4000:]


def test_a_refused_output_directory_stops_every_worker_at_once_not_at_a_collective_timeout(tmp_path):
    """The chief refuses ``--out`` (it holds other files); the other worker learns it from the
    chief before training starts and exits too, instead of waiting in training's first all-reduce."""
    repo = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}
    log, out = tmp_path / "log.csv", tmp_path / "out"
    generate_interactions(**WORKER_LOG).to_csv(log, index=False)
    out.mkdir()
    (out / "notes.txt").write_text("not a run")
    argv = [sys.executable, "-m", "sasrec_tf.cli", "train", "--data", str(log), "--format", "csv", "--out", str(out),
            "--strategy", "multi_worker", "--epochs", "1", "--max-len", "10", "--hidden-units", "16",
            "--num-blocks", "1", "--eval-negatives", "20"]
    chief, other = run_local_cluster(argv, 2, timeout=120, env=env, stop_on_failure=False)
    assert chief.returncode == 2 and "already holds" in chief.output, chief.output[-3000:]
    assert other.returncode == 2, f"worker 1 did not stop by itself ({other.returncode}):\n{other.output[-3000:]}"
    assert "the chief refused the output directory" in other.output
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
