"""``sasrec-tf train --strategy parameter_server``: the item table sharded over ps tasks.

One loopback cluster (chief + 2 workers + 2 ps, processes on 127.0.0.1, the same command line for
every task) trains a tiny catalogue through the CLI while the test kills a worker; the tests read
what it wrote: where the table's shards lived, that training finished and learned, that the
gathered model is the one that trained, and that its export loads and answers like it.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sasrec_tf.data.synthetic import generate_interactions
from sasrec_tf.parameter_server import TablePartitioner, check_cluster
from sasrec_tf.testing.cluster import run_parameter_server_cluster

LOG = dict(num_users=300, num_items=120, mean_length=10, seed=2)
EPOCHS = 4
REPO = str(Path(__file__).resolve().parents[1])


def _env() -> dict:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "", "TF_USE_LEGACY_KERAS": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))}


def _train_argv(log: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "sasrec_tf.cli", "train", "--data", str(log), "--format", "csv", "--out", str(out),
            "--epochs", str(EPOCHS), "--max-len", "10", "--hidden-units", "16", "--num-blocks", "1",
            "--batch-size", "32", "--eval-negatives", "50", *extra]


# ------------------------------------------------------------------------------- without a cluster
class _Float32:
    size = 4


def test_the_partitioner_shards_only_the_declared_tables_by_rows():
    partitioner = TablePartitioner(2)
    with partitioner.tables([(121, 16)]):
        assert partitioner((121, 16), _Float32) == [2, 1]
        assert partitioner((10, 16), _Float32) == [1, 1]  # positional table, kernels: whole
        assert partitioner((121,), _Float32) == [1]
    assert partitioner((121, 16), _Float32) == [1, 1], "outside the block nothing is sharded"
    with TablePartitioner(4, min_shard_bytes=121 * 16 * 4 // 3).tables([(121, 16)]) as by_size:
        assert by_size((121, 16), _Float32) == [3, 1]
    with TablePartitioner(4, num_shards=2).tables([(121, 16)]) as fixed:
        assert fixed((121, 16), _Float32) == [2, 1]


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_shards=3), "between 1 and the 2 ps"),
    (dict(min_shard_bytes=0), "must be positive"),
    (dict(num_shards=1, min_shard_bytes=10), "not both"),
])
def test_bad_shard_options_are_refused_with_the_reason(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TablePartitioner(2, **kwargs)


def test_a_cluster_without_ps_tasks_or_chief_is_refused_with_what_is_missing():
    with pytest.raises(ValueError, match="needs TF_CONFIG"):
        check_cluster(None)
    config = {"cluster": {"chief": ["a:1"], "worker": ["b:1"]}, "task": {"type": "chief", "index": 0}}
    with pytest.raises(ValueError, match="missing: ps"):
        check_cluster(config)


def test_the_cli_refuses_parameter_server_flags_and_a_missing_tf_config_before_tensorflow(tmp_path):
    env = {key: value for key, value in _env().items() if key != "TF_CONFIG"}
    log = tmp_path / "log.csv"
    log.write_text("user,item,timestamp\n")
    common = [sys.executable, "-m", "sasrec_tf.cli", "train", "--data", str(log), "--out", str(tmp_path / "o")]
    flags = subprocess.run([*common, "--ps-shards", "2"], env=env, capture_output=True, text=True, timeout=60)
    assert flags.returncode == 2 and "need --strategy parameter_server" in flags.stderr
    missing = subprocess.run([*common, "--strategy", "parameter_server"], env=env, capture_output=True, text=True,
                             timeout=60)
    assert missing.returncode == 2 and "needs TF_CONFIG" in missing.stderr
    assert "Traceback" not in missing.stderr


# ------------------------------------------------------------------------------- the loopback cluster
@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory):
    """The same ``sasrec-tf train`` on a chief, 2 workers and 2 ps tasks; worker 1 is killed when
    the chief starts its second epoch."""
    root = tmp_path_factory.mktemp("parameter_server")
    log, out = root / "log.csv", root / "out"
    generate_interactions(**LOG).to_csv(log, index=False)
    run = run_parameter_server_cluster(_train_argv(log, out, "--strategy", "parameter_server"), 2, 2, timeout=240,
                                       env=_env(), kill=("worker", 1), kill_when="Epoch 2/")
    assert run.chief.returncode == 0, f"chief failed ({run.chief.returncode}):\n{run.chief.output[-6000:]}"
    return {"run": run, "out": out, "metrics": json.loads((out / "metrics.json").read_text())}


def test_each_ps_task_holds_a_part_of_the_item_table(cluster_run):
    (table,) = cluster_run["metrics"]["training"]["parameter_servers"]
    assert table["table"] == "item_embedding" and table["shape"] == [LOG["num_items"] + 1, 16]
    shards = table["shards"]
    assert sorted(re.search(r"/job:(\w+)/replica:0/task:(\d)", s["device"]).groups() for s in shards) == [
        ("ps", "0"), ("ps", "1")]
    assert sum(s["shape"][0] for s in shards) == LOG["num_items"] + 1
    assert all(s["shape"][1] == 16 and s["shape"][0] >= LOG["num_items"] // 2 for s in shards)


def test_training_survives_a_killed_worker_and_runs_every_epoch(cluster_run):
    run = cluster_run["run"]
    assert run.killed == ("worker", 1) and run.workers[1].returncode is None
    training = cluster_run["metrics"]["training"]
    assert training["epochs"] == EPOCHS and training["stopped"] == "max_epochs"
    assert f"Epoch {EPOCHS}/{EPOCHS}" in run.chief.output


def test_the_sharded_model_learns(cluster_run):
    # Chance for the sampled protocol (the test item among 50 negatives): hr@10 = 10 / 51 ~ 0.2.
    assert cluster_run["metrics"]["test"]["sampled"]["hr@10"] > 0.28
    assert cluster_run["metrics"]["test"]["full"]["hr@10"] > 10 / LOG["num_items"]


def test_the_gathered_model_ranks_exactly_as_the_sharded_model_validated(cluster_run):
    # The last epoch's validation ran on the sharded model (on the chief, reading the ps tasks);
    # the final evaluation of valid runs on the gathered, unsharded copy: the same users, the same ranks.
    line = re.findall(rf"Epoch {EPOCHS}: val_hr@10: ([\d.]+) - val_ndcg@10: ([\d.]+) - val_mrr: ([\d.]+)",
                      cluster_run["run"].chief.output)[-1]
    valid = cluster_run["metrics"]["valid"]["full"]
    assert [float(v) for v in line] == pytest.approx([valid["hr@10"], valid["ndcg@10"], valid["mrr"]], abs=6e-5)


def test_the_export_of_the_sharded_run_loads_with_every_signature_is_served_and_answers_as_in_process(
        cluster_run, tmp_path):
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    from sasrec_tf.artifacts import load_trained
    from sasrec_tf.export import SIGNATURES, export_saved_model

    trained = load_trained(cluster_run["out"])
    path = export_saved_model(cluster_run["out"], tmp_path, "sasrec", k=5)
    loaded = tf.saved_model.load(str(path))
    assert set(SIGNATURES) <= set(loaded.signatures)
    for record in tf.data.TFRecordDataset(str(path / "assets.extra/tf_serving_warmup_requests")):
        request = prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request
        inputs = {key: tf.constant(tf.make_ndarray(proto)) for key, proto in request.inputs.items()}
        assert loaded.signatures[request.model_spec.signature_name](**inputs)  # every signature answers

    rng = np.random.default_rng(0)
    ids = trained.vocab.ids
    histories = [[ids[i] for i in rng.integers(0, len(ids), size=6)] for _ in range(8)]
    got = loaded.signatures["serving_default"](history=tf.constant(histories))
    model = trained.model
    query = model.query_embeddings(tf.constant(np.stack([trained.vocab.encode(h) for h in histories])))
    scores = query.numpy() @ model.item_embeddings().numpy().T
    scores[:, 0] = -np.inf
    for row, history in enumerate(histories):
        scores[row, trained.vocab.encode(history)] = -np.inf
    np.testing.assert_allclose(got["scores"].numpy(), -np.sort(-scores, axis=1)[:, :5], rtol=1e-5, atol=1e-6)

    with tf.Graph().as_default(), tf.compat.v1.Session() as session:  # TF Serving's loader, tag "serve"
        signature = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(path)).signature_def[
            "serving_default"]
        session_ids = session.run(signature.outputs["item_ids"].name, {signature.inputs["history"].name: histories})
    np.testing.assert_array_equal(session_ids, got["item_ids"].numpy())

    from sasrec_tf.serving import LocalModelServer, PredictionClient

    with LocalModelServer(tmp_path, port=0, rest_port=0) as server, \
            PredictionClient(server.address, "sasrec", timeout=30) as client:  # what `sasrec-tf serve` runs
        served = client.recommend(histories)
    np.testing.assert_array_equal(np.asarray(served.item_ids).astype(str), got["item_ids"].numpy().astype(str))
    np.testing.assert_allclose(served.scores, got["scores"].numpy(), rtol=1e-6)


def test_a_killed_ps_task_stops_the_chief_with_the_way_out_and_the_same_command_resumes(tmp_path):
    # A ps task holds half of every table: losing it loses the variables, so the chief stops
    # (exit 2, one line saying what to do) instead of hanging; the same command on every task
    # resumes from the chief's backup after the last finished epoch, not from the start.
    # (A killed chief resumes the same way: checked by hand, docs/distributed.md.)
    log, out = tmp_path / "log.csv", tmp_path / "out"
    generate_interactions(**LOG).to_csv(log, index=False)
    argv = _train_argv(log, out, "--strategy", "parameter_server")
    lost = run_parameter_server_cluster(argv, 2, 2, timeout=240, env=_env(), kill=("ps", 0), kill_when="Epoch 3/")
    assert lost.killed == ("ps", 0) and lost.chief.returncode == 2, lost.chief.output[-4000:]
    message = [line for line in lost.chief.output.splitlines() if line.startswith("sasrec-tf: error:")]
    assert len(message) == 1 and "a ps task (or every worker) of the cluster was lost" in message[0]
    assert f"resumes from {out / 'backup'}" in message[0]
    assert not (out / "metrics.json").exists()
    again = run_parameter_server_cluster(argv, 2, 2, timeout=240, env=_env())
    assert again.chief.returncode == 0, again.chief.output[-6000:]
    epochs = re.findall(r"^Epoch (\d+)/", again.chief.output, flags=re.MULTILINE)
    assert epochs[0] == "3" and epochs[-1] == str(EPOCHS), epochs  # epochs 1 and 2 were not trained again
    training = json.loads((out / "metrics.json").read_text())["training"]
    assert training["epochs"] == EPOCHS and training["stopped"] == "max_epochs"
