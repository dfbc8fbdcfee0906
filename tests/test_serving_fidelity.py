"""The stand-in fails where tensorflow_model_server 2.20.0 fails (issue 29): start-up, version
discovery, failed versions, labels per poll, the batch queue, typed outputs, config files as protos.

Each test names the TF Serving source lines (tag 2.20.0) whose behaviour it pins. Polls are driven
by hand (``poll_seconds=0`` and ``manager.poll()``), so no test depends on timing.
"""

import shutil
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from sasrec_tf.export import export_saved_model
from sasrec_tf.serving import LocalModelServer, PredictionClient, ServingError
from sasrec_tf.serving.client import history_tensor
from sasrec_tf.serving.errors import StatusError
from test_export import K, check_top_k, sample_histories


@pytest.fixture(scope="module")
def good(trained, tmp_path_factory) -> Path:
    """One export version directory to copy into model bases."""
    return export_saved_model(trained, tmp_path_factory.mktemp("fidelity"), "sasrec", k=K)


def corrupt(path: Path) -> None:
    path.mkdir(parents=True)
    (path / "saved_model.pb").write_bytes(b"corrupt")


def config_file(tmp_path: Path, base: Path, policy: str = "", labels: str = "", platform: bool = True) -> Path:
    path = tmp_path / "models.config"
    platform_line = 'model_platform: "tensorflow"' if platform else ""
    path.write_text(f'model_config_list {{ config {{ name: "m" base_path: "{base}" {platform_line} {policy} '
                    f'{labels} }} }}')
    return path


def states(server: LocalModelServer) -> dict[int, str]:
    try:
        return {row.version: row.state for row in server.manager.status("m")}
    except StatusError:
        return {}


# ------------------------------------------------------------------------------- start-up (items 1, 2, 7)
def test_a_start_whose_newest_version_fails_to_load_fails_even_under_latest_n(good, tmp_path):
    """load_servables_fast.cc ~87-116 (the newest version of each model must become AVAILABLE) →
    server.cc ~332 → main.cc ~342-345: the real server exits after the load's retries."""
    shutil.copytree(good, tmp_path / "m" / "1")
    corrupt(tmp_path / "m" / "2")
    config = config_file(tmp_path, tmp_path / "m", "model_version_policy { latest { num_versions: 2 } }")
    with pytest.raises(ValueError, match=r"Failed to start server: 1 servable\(s\) did not become available: "
                                         r"\{name: m version: 2\} due to error"):
        LocalModelServer(model_config_file=config, port=0, poll_seconds=0, load_retries=0).start()


def test_sasrec_tf_serve_exits_2_when_the_first_load_fails(good, tmp_path, capsys):
    from sasrec_tf.cli import main

    corrupt(tmp_path / "m" / "1")
    assert main(["serve", "--model-base", str(tmp_path), "--port", "0", "--max-num-load-retries", "0"]) == 2
    assert "did not become available" in capsys.readouterr().err


def test_no_port_opens_before_every_model_has_a_version_and_then_it_serves(good, tmp_path):
    """server_core.cc ~391 (ConnectAdaptersToManagerAndAwaitModelLoads waits) runs before the gRPC
    and HTTP servers start (server.cc ~417, ~446)."""
    (tmp_path / "m").mkdir()
    server = LocalModelServer(tmp_path, port=0, poll_seconds=0.02, load_retries=0)
    started = threading.Thread(target=server.start, daemon=True)
    started.start()
    started.join(timeout=0.5)
    assert started.is_alive() and server.port is None  # waiting: nothing bound
    shutil.copytree(good, tmp_path / "m" / "1")
    started.join(timeout=120)
    assert not started.is_alive()
    try:
        with PredictionClient(server.address, "m", timeout=30) as client:
            assert client.recommend([["sku-1"]]).item_ids.shape == (1, K)
    finally:
        server.stop()
    with pytest.raises(ValueError, match="no version of n to load, and poll_seconds=0"):
        (tmp_path / "n").mkdir()
        LocalModelServer(tmp_path, port=0, poll_seconds=0).start()  # would wait forever: refused at once


# ------------------------------------------------------------------------------- versions (items 5, 6, 7)
def test_a_failed_version_is_never_repaired_in_place_only_removed_for_a_poll(good, tmp_path):
    """aspired_versions_manager.cc ~322-356: an errored aspired version is re-added only with
    enable_reload_servables_with_error, which main.cc never sets; FlushServables (~437-462) forgets
    it once it is no longer aspired (gone from disk for a poll)."""
    shutil.copytree(good, tmp_path / "m" / "1")
    with LocalModelServer(tmp_path, port=0, poll_seconds=0, load_retries=0) as server:
        corrupt(tmp_path / "m" / "2")
        server.manager.poll()
        assert states(server) == {2: "END", 1: "AVAILABLE"}  # the old version keeps serving
        shutil.rmtree(tmp_path / "m" / "2")
        shutil.copytree(good, tmp_path / "m" / "2")  # repaired between two polls
        server.manager.poll()
        server.manager.poll()
        assert states(server) == {2: "END", 1: "AVAILABLE"}
        shutil.rmtree(tmp_path / "m" / "2")
        server.manager.poll()  # gone for one poll
        shutil.copytree(good, tmp_path / "m" / "2")
        server.manager.poll()
        assert states(server) == {2: "AVAILABLE", 1: "END"}


def test_every_numeric_child_is_a_version_even_without_a_saved_model(good, tmp_path):
    """file_system_storage_path_source.cc ~87-89, ~144-165: a child is a version if its name parses."""
    shutil.copytree(good, tmp_path / "m" / "1")
    with LocalModelServer(tmp_path, port=0, poll_seconds=0, load_retries=0) as server:
        (tmp_path / "m" / "3").mkdir()  # a copy that has not begun
        server.manager.poll()
        assert states(server) == {3: "END", 1: "AVAILABLE"}
        [row] = server.manager.status("m", 3)
        assert row.error_code != grpc.StatusCode.OK and row.error_message


def test_an_empty_base_path_unloads_everything_and_a_missing_one_changes_nothing(good, tmp_path):
    """availability_preserving_policy.cc ~65-75: with no aspired version every version is unloaded;
    file_system_storage_path_source.cc ~253-262: a missing base path emits nothing."""
    shutil.copytree(good, tmp_path / "base" / "1")
    config = config_file(tmp_path, tmp_path / "base")
    with LocalModelServer(model_config_file=config, port=0, poll_seconds=0) as server, \
            PredictionClient(server.address, "m", timeout=30) as client:
        moved = tmp_path / "moved"
        (tmp_path / "base").rename(moved)
        server.manager.poll()
        assert client.recommend([["sku-1"]]).item_ids.shape == (1, K)
        moved.rename(tmp_path / "base")
        shutil.rmtree(tmp_path / "base" / "1")
        server.manager.poll()
        with pytest.raises(ServingError) as info:
            client.recommend([["sku-1"]])
        assert info.value.code == grpc.StatusCode.NOT_FOUND and states(server) == {1: "END"}


# ------------------------------------------------------------------------------- labels (item 8)
def test_labels_are_re_checked_at_every_poll_without_the_flag(good, tmp_path):
    """server_core.cc ~489-514 and ~549-584: ReloadConfig runs UpdateModelVersionLabelMap for an
    unchanged config too, so a label whose version went away refuses every poll until fixed."""
    shutil.copytree(good, tmp_path / "base" / "1")
    shutil.copytree(good, tmp_path / "base" / "2")
    policy = "model_version_policy { specific { versions: 1 versions: 2 } }"
    config = config_file(tmp_path, tmp_path / "base", policy)
    with LocalModelServer(model_config_file=config, port=0, poll_seconds=0) as server:
        config_file(tmp_path, tmp_path / "base", policy, 'version_labels { key: "stable" value: 2 }')
        server.manager.poll()
        assert server.manager.rejected is None and server.manager.resolve("m", label="stable").version == 2
        shutil.rmtree(tmp_path / "base" / "2")
        server.manager.poll()  # version 2 is unloaded; the config did not change
        server.manager.poll()
        assert "label 'stable' to version 2" in server.manager.rejected


# ------------------------------------------------------------------------------- gRPC outputs (item 4)
def test_grpc_outputs_are_typed_value_fields_unless_tensor_content_is_asked_for(good, tmp_path):
    """predict_util.cc ~174-187: Tensor::AsProtoField unless --enable_serialization_as_tensor_content."""
    shutil.copytree(good, tmp_path / "m" / "1")
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "m"
    import tensorflow as tf

    request.inputs["history"].CopyFrom(tf.make_tensor_proto(history_tensor([["sku-1", "sku-2"]])))
    for content in (False, True):
        with LocalModelServer(tmp_path, port=0, poll_seconds=0,
                              enable_serialization_as_tensor_content=content) as server:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(server.address))
            scores = stub.Predict(request, timeout=30).outputs["scores"]
        assert (len(scores.float_val), len(scores.tensor_content)) == ((0, K * 4) if content else (K, 0))


# ------------------------------------------------------------------------------- batching (items 9, 10)
def test_a_full_batch_queue_is_unavailable_and_the_client_names_both_causes():
    """shared_batch_scheduler.h Schedule: a task that does not fit the open batch, with
    max_enqueued_batches batches waiting, is UNAVAILABLE "...queue ... is full"."""
    from sasrec_tf.serving.batching import Batcher

    gate, running = threading.Event(), threading.Event()

    def run(inputs):
        running.set()
        gate.wait(timeout=30)
        return {"y": inputs["x"]}

    batcher = Batcher(run, max_batch_size=1, num_batch_threads=1, max_enqueued_batches=1)
    first = threading.Thread(target=batcher, args=({"x": np.zeros((1, 1))},))
    first.start()
    assert running.wait(timeout=30)  # the first batch runs: it has left the queue
    second = threading.Thread(target=batcher, args=({"x": np.zeros((1, 1))},))
    second.start()
    deadline = time.monotonic() + 30
    while not batcher._batches:  # the second waits in the one queued batch
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with pytest.raises(StatusError) as info:
        batcher({"x": np.zeros((1, 1))})
    assert info.value.code == grpc.StatusCode.UNAVAILABLE and "queue to which this task was submitted is full" in \
        info.value.message
    gate.set()
    first.join(timeout=30)
    second.join(timeout=30)
    batcher.close()
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    with PredictionClient(f"127.0.0.1:{free}", "m", timeout=5) as nowhere, pytest.raises(ServingError) as info:
        nowhere.recommend([["a"]])
    assert info.value.code == grpc.StatusCode.UNAVAILABLE
    assert "unreachable" in info.value.details and "batch queue is full" in info.value.details


def test_without_padding_a_batch_of_mixed_widths_fails_every_request_in_it():
    """batching_session.cc ~533-545: FAILED_PRECONDITION for the whole batch when padding is off."""
    from sasrec_tf.serving.batching import Batcher

    gate, running = threading.Event(), threading.Event()

    def run(inputs):
        running.set()
        gate.wait(timeout=30)
        return {"y": inputs["x"]}

    batcher = Batcher(run, max_batch_size=8, pad_variable_length_inputs=False)
    errors, threads = [], []
    blocker = threading.Thread(target=batcher, args=({"x": np.zeros((1, 1))},))
    blocker.start()
    assert running.wait(timeout=30)  # the blocker runs alone; the next two queue into one batch

    def call(width):
        try:
            batcher({"x": np.zeros((1, width))})
        except StatusError as err:
            errors.append(err.code)

    deadline = time.monotonic() + 30
    for width in (2, 3):
        threads.append(threading.Thread(target=call, args=(width,)))
        threads[-1].start()
        while sum(len(batch) for batch in batcher._batches) < len(threads):
            assert time.monotonic() < deadline
            time.sleep(0.01)
    gate.set()
    for thread in [blocker, *threads]:
        thread.join(timeout=30)
    batcher.close()
    assert errors == [grpc.StatusCode.FAILED_PRECONDITION] * 2


@pytest.mark.parametrize("text, message", [
    ("max_batch_size { value: 8 }\nallowed_batch_sizes: 4\n", "Last entry in allowed_batch_sizes must match"),
    ("max_batch_size { value: 8 }\nno_such_field: 1\n", "has no field named \"no_such_field\""),
    ("max_batch_size: 8\n", "not a BatchingParameters text proto"),  # a wrapper, not a plain number
])
def test_a_batching_file_tf_serving_would_refuse_is_refused(tmp_path, text, message):
    """servables/tensorflow/bundle_factory_util.cc ~113-125; ParseProtoTextFile refuses unknown fields."""
    from sasrec_tf.serving.batching import read_batching_parameters

    path = tmp_path / "batching_parameters.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_batching_parameters(path)


def test_a_models_config_tf_serving_would_refuse_is_refused(good, tmp_path):
    """server_core.cc ~130-150 (absolute base paths) and ~78-105 (model_platform is required)."""
    from sasrec_tf.serving.model_config import read_model_config

    (tmp_path / "models.config").write_text('model_config_list { config { name: "m" base_path: "m" '
                                            'model_platform: "tensorflow" } }')
    with pytest.raises(ValueError, match="Expected model m to have an absolute path or URI; got base_path..=m"):
        read_model_config(tmp_path / "models.config")
    assert read_model_config(tmp_path / "models.config", model_base=tmp_path)[0].base_path == tmp_path / "m"
    with pytest.raises(ValueError, match="neither ModelServerConfig::model_type .deprecated. nor"):
        read_model_config(config_file(tmp_path, tmp_path / "m", platform=False))


def test_with_batching_a_fixed_width_request_not_starting_with_the_padding_token_is_served(good, tmp_path, trained):
    """batching_session.cc pads only where merged widths differ; the stand-in no longer refuses it."""
    shutil.copytree(good, tmp_path / "m" / "1")
    histories = sample_histories(trained, count=3, seed=5)
    width = max(len(h) for h in histories)
    fixed = np.array([[""] * (width - len(h)) + list(h) for h in histories], dtype=object)
    fixed[:, 0] = np.where(fixed[:, 0] == "", "nope", fixed[:, 0])  # an unknown id first, not ""
    with LocalModelServer(tmp_path, port=0, poll_seconds=0, enable_batching=True) as server, \
            PredictionClient(server.address, "m", timeout=30) as client:
        out = client.predict({"history": fixed})
    check_top_k(trained, [list(row) for row in fixed], out["item_ids"], out["scores"])


# ------------------------------------------------------------------------------- issue 28: serve flags
def test_sasrec_tf_serve_exposes_the_request_and_connection_limits_with_their_defaults():
    from sasrec_tf.cli import build_parser
    from sasrec_tf.serving.options import DEFAULTS

    action = next(a for a in build_parser()._actions if a.dest == "command")
    serve = action.choices["serve"]
    args = serve.parse_args(["--model-base", "."])
    assert (args.max_request_cells, args.rest_max_connections) == (DEFAULTS.max_request_cells,
                                                                   DEFAULTS.rest_max_connections)
    text = serve.format_help()
    assert f"{DEFAULTS.max_request_cells:,}" in text and f"default {DEFAULTS.rest_max_connections})" in text

