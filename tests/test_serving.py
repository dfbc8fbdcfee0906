"""Serving over TF Serving's APIs: the local PredictionService/ModelService, the gRPC and REST clients,
status codes, versions and labels, concurrency. Expected answers are computed in-process from the
model (see ``reference_top_k`` in test_export.py), independently of the export and the server."""

import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

from sasrec_tf.export import SIGNATURES, UNKNOWN_SCORE, export_saved_model
from sasrec_tf.serving import LocalModelServer, PredictionClient, RestClient, ServingError
from sasrec_tf.serving.client import history_tensor
from sasrec_tf.serving.manager import ModelSource, read_model_config
from sasrec_tf.testing.serving import recommend_concurrently
from test_export import K, MAX_LEN, check_top_k, reference_top_k, sample_histories

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def base(trained, tmp_path_factory):
    """``sasrec`` (version 1) and ``live`` (gets a version 2 during a test). Models without a loadable
    version stop a start, as on TF Serving, so tests that need them add them to their own base."""
    base = tmp_path_factory.mktemp("serving")
    first = export_saved_model(trained, base, "sasrec", k=K)
    shutil.copytree(first, base / "live" / "1")
    return base


@pytest.fixture(scope="module")
def server(base):
    with LocalModelServer(base, port=0, rest_port=0, poll_seconds=0.2, load_retries=0,
                          labels={"sasrec": {"stable": 1, "canary": 2}},
                          allow_version_labels_for_unavailable_models=True) as server:
        yield server


@pytest.fixture(scope="module")
def client(server):
    with PredictionClient(server.address, "sasrec", timeout=30) as client:
        yield client


def codes(call):
    with pytest.raises(ServingError) as info:
        call()
    return info.value


# ------------------------------------------------------------------------------- answers
def test_server_binds_loopback_by_default_and_reports_the_bound_port(server):
    assert server.host == "127.0.0.1" and server.port > 0 and server.address == f"127.0.0.1:{server.port}"


def test_grpc_top_k_equals_the_in_process_top_k_for_the_same_histories(client, trained):
    histories = sample_histories(trained, count=16, seed=21)
    top = client.recommend(histories)
    check_top_k(trained, histories, top.item_ids, top.scores)
    for row, history in enumerate(histories):
        assert not set(top.item_ids[row]) & set(history)
    both = client.recommend(histories, exclude_history=False)
    check_top_k(trained, histories, both.item_ids, both.scores, exclude_history=False)


def test_unknown_ids_empty_and_over_long_histories_through_grpc(client, trained):
    ids = trained.vocab.ids
    histories = [["nope", ids[3], "", "zzz", ids[4]], [], ["unknown"], [ids[i] for i in range(3 * MAX_LEN)]]
    top = client.recommend(histories)
    check_top_k(trained, histories, top.item_ids, top.scores)
    popular = trained.vocab.decode(np.argsort(-trained.item_counts, kind="stable")[:K])
    assert list(top.item_ids[1]) == list(popular) == list(top.item_ids[2])


def test_score_embed_and_item_embeddings_through_the_client(client, trained):
    ids = trained.vocab.ids
    histories = [[ids[1], ids[2]], [ids[5]]]
    _, _, reference = reference_top_k(trained, histories, exclude_history=False)
    scores = client.score(histories, [[ids[10], "nope"], [ids[11], ids[12], ids[13]]])
    assert [len(s) for s in scores] == [2, 3]
    np.testing.assert_allclose(scores[0][0], reference[0, 11], rtol=1e-4)
    assert scores[0][1] == UNKNOWN_SCORE
    np.testing.assert_allclose(scores[1], reference[1, [12, 13, 14]], rtol=1e-4)
    assert client.embed(histories).shape == (2, 16)
    vectors, known = client.item_embeddings([ids[0], "nope"])
    np.testing.assert_allclose(vectors[0], trained.model.item_embeddings().numpy()[1], rtol=1e-6)
    assert known.tolist() == [True, False]


@pytest.fixture(scope="module")
def batching_server(base):
    with LocalModelServer(base, port=0, poll_seconds=0, enable_batching=True, max_batch_size=16) as server:
        yield server


@pytest.mark.parametrize("which", ["server", "batching_server"])
def test_many_concurrent_clients_all_get_correct_answers(which, request, trained):
    server = request.getfixturevalue(which)
    requests = [sample_histories(trained, count=1 + i % 3, seed=100 + i) for i in range(24)]
    answers = recommend_concurrently(lambda: PredictionClient(server.address, "sasrec", timeout=60), requests, 8)
    assert len(answers) == len(requests)
    for index, histories in enumerate(requests):
        check_top_k(trained, histories, answers[index].item_ids, answers[index].scores)


# ------------------------------------------------------------------------------- status codes
def test_wrong_dtype_rank_missing_or_extra_inputs_are_invalid_argument(client):
    good = history_tensor([["a"]])
    for inputs, message in [
        ({"history": np.array([[1, 2]], dtype=np.int64)}, "must be DT_STRING, got DT_INT64"),
        ({"history": np.array([[1, 2]], dtype=np.int32)}, "got DT_INT32"),
        ({"history": np.array(["a", "b"], dtype=object)}, "must have shape [None, None]"),
        ({}, "missing ['history']"),
        ({"history": good, "user": good}, "unexpected ['user']"),
    ]:
        error = codes(lambda: client.predict(inputs))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT and message in error.details, error
    error = codes(lambda: client.predict({"history": history_tensor([["a"], ["b"]]),
                                          "candidates": history_tensor([["a"]])}, "score"))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and "same batch size" in error.details
    error = codes(lambda: client.predict({"history": good}, output_filter=["nope"]))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and "output_filter" in error.details


def _raw_history(dims, values, *, unknown_rank=False):
    """A PredictRequest for ``serving_default`` whose ``history`` declares ``dims`` but holds ``values``."""
    from tensorflow.core.framework import tensor_pb2, types_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "sasrec"
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=values)
    proto.tensor_shape.unknown_rank = unknown_rank
    for size in dims:
        proto.tensor_shape.dim.add(size=size)
    request.inputs["history"].CopyFrom(proto)
    return request


def test_a_tensor_whose_content_does_not_match_its_shape_is_rejected_before_anything_is_allocated(client):
    import resource

    stub = prediction_service_pb2_grpc.PredictionServiceStub(client.channel)
    amplifier = _raw_history([1, 30_000_000], [b"", b"sku-1"])
    assert amplifier.ByteSize() < 64
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    for request, message in [
        (amplifier, "exceeds the request limit"),
        (_raw_history([3, 2], [b"", b"sku-1"]), "declares 6 values but the tensor holds 2"),
        (_raw_history([1, 3], [b"", b"sku-1", b"sku-2", b"sku-3"]), "declares 3 values but the tensor holds 4"),
        (_raw_history([-1, 2], [b"", b"sku-1"]), "dimensions must be >= 0"),
        (_raw_history([], [], unknown_rank=True), "unknown_rank"),
        (_raw_history([2000, 1000], [b""] * 10), "at most 1,048,576 per request"),
    ]:
        with pytest.raises(grpc.RpcError) as info:
            stub.Predict(request, timeout=30)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and message in info.value.details(), request
    assert time.monotonic() - started < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 100_000  # KiB: nothing near 30M strings
    ok = stub.Predict(_raw_history([1, 2], [b"", b"sku-1"]), timeout=30)
    assert len(ok.outputs["item_ids"].string_val) == K


def test_the_request_element_limit_is_a_server_setting_and_applies_to_rest_too(base):
    with LocalModelServer(base, port=0, rest_port=0, poll_seconds=0, max_request_elements=6) as small:
        with PredictionClient(small.address, "sasrec", timeout=30) as tiny:
            assert tiny.recommend([["sku-1", "sku-2"], ["sku-3"]]).item_ids.shape == (2, K)  # 2 x 3 elements
            error = codes(lambda: tiny.recommend([["sku-1", "sku-2", "sku-3"], []]))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT and "at most 6 per request" in error.details
        rest = RestClient(f"http://127.0.0.1:{small.rest_port}", "sasrec", timeout=30)
        error = codes(lambda: rest.recommend([["sku-1", "sku-2", "sku-3"], []]))
        assert (error.code, error.http_status) == (grpc.StatusCode.INVALID_ARGUMENT, 400)
        assert "at most 6 per request" in error.details


def test_rest_rejects_bad_content_lengths_and_closes_connections_that_send_nothing(server):
    def read_all(sock) -> bytes:  # the server closes these connections after answering
        chunks = [sock.recv(4096)]
        while chunks[-1]:
            chunks.append(sock.recv(4096))
        return b"".join(chunks)

    def raw(data: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", server.rest_port), timeout=30) as sock:
            sock.sendall(data)
            return read_all(sock)

    head = b"POST /v1/models/sasrec:predict HTTP/1.1\r\nHost: x\r\n"
    assert b" 400 " in raw(head + b"Content-Length: -5\r\n\r\n").split(b"\r\n")[0]
    answer = raw(head + b"Content-Length: 999999999999\r\n\r\n")
    assert b" 400 " in answer.split(b"\r\n")[0] and b"exceeds this server's limit" in answer
    original = server.rest_read_timeout
    server._http.RequestHandlerClass.timeout = 0.5
    try:
        with socket.create_connection(("127.0.0.1", server.rest_port), timeout=30) as idle:
            idle.sendall(head + b"Content-Length: 100\r\n\r\n{")  # promises 100 bytes, sends 1
            started = time.monotonic()
            answer = read_all(idle)  # ends: the connection is closed
            assert b" 408 " in answer and b"did not arrive within 0.5 s" in answer
        assert time.monotonic() - started < 10
    finally:
        server._http.RequestHandlerClass.timeout = original


def test_unknown_signature_is_failed_precondition_over_grpc_and_names_the_available_ones(client):
    error = codes(lambda: client.predict({"history": history_tensor([["a"]])}, "recommend"))
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION  # TF Serving's gRPC code (REST: 400)
    assert "'recommend' not found" in error.details and "serving_default" in error.details
    assert "Predict 'sasrec' signature 'recommend'" in str(error) and error.target in str(error)


def test_unknown_model_and_version_are_not_found_and_an_unknown_label_is_invalid(server, client):
    with PredictionClient(server.address, "nope") as other:
        assert codes(lambda: other.recommend([["a"]])).code == grpc.StatusCode.NOT_FOUND
        assert codes(other.status).code == grpc.StatusCode.NOT_FOUND
        error = codes(lambda: other.recommend([["a"]], label="stable"))  # the label is looked up first
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT and "Unrecognized servable version label" in error.details
    error = codes(lambda: client.recommend([["a"]], version=9))
    assert error.code == grpc.StatusCode.NOT_FOUND and "version 9" in str(error)
    assert codes(lambda: client.recommend([["a"]], label="canary")).code == grpc.StatusCode.NOT_FOUND  # -> 2
    error = codes(lambda: client.recommend([["a"]], label="beta"))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and "label" in error.details
    assert client.recommend([["a"]], label="stable").item_ids.shape == (1, K)


def test_models_without_an_available_version_are_not_found_and_status_reports_the_load_error(base, tmp_path):
    shutil.copytree(base / "sasrec" / "1", tmp_path / "sasrec" / "1")
    with LocalModelServer(tmp_path, port=0, poll_seconds=0, load_retries=0) as server, \
            PredictionClient(server.address, "empty") as empty, PredictionClient(server.address, "broken") as broken:
        (tmp_path / "empty").mkdir()  # models added at run time are served as far as they can be
        (tmp_path / "broken" / "1").mkdir(parents=True)
        (tmp_path / "broken" / "1" / "saved_model.pb").write_bytes(b"not a SavedModel")
        server.manager.poll()
        error = codes(lambda: empty.recommend([["a"]]))
        assert error.code == grpc.StatusCode.NOT_FOUND and "Servable not found for request" in error.details
        error = codes(empty.status)
        assert error.code == grpc.StatusCode.NOT_FOUND and "Could not find any versions" in error.details
        error = codes(lambda: broken.recommend([["a"]]))
        assert error.code == grpc.StatusCode.NOT_FOUND and "failed to load" in error.details
        [status] = broken.status()
        assert status["state"] == "END" and status["error_message"]
        assert status["error_code"] == grpc.StatusCode.DATA_LOSS.value[0]  # TensorFlow's code for a corrupt .pb


class _SlowPredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def Predict(self, request, context):  # noqa: N802 - gRPC method name
        time.sleep(2)
        return predict_pb2.PredictResponse()


def test_client_errors_name_deadlines_and_unreachable_servers(client):
    from concurrent import futures

    slow = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(_SlowPredictionService(), slow)
    port = slow.add_insecure_port("127.0.0.1:0")
    slow.start()
    try:
        with PredictionClient(f"127.0.0.1:{port}", "sasrec", timeout=0.2) as waiting:
            error = codes(lambda: waiting.recommend([["a"]]))
        assert error.code == grpc.StatusCode.DEADLINE_EXCEEDED and "within 0.2 s" in error.details
    finally:
        slow.stop(0)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    with PredictionClient(f"127.0.0.1:{free}", "sasrec", timeout=5) as nowhere:
        error = codes(lambda: nowhere.recommend([["a"]]))
    assert error.code == grpc.StatusCode.UNAVAILABLE and f"127.0.0.1:{free}" in str(error)
    with pytest.raises(ValueError, match="not both"):
        client.recommend([["a"]], version=1, label="stable")


def test_metadata_and_status_describe_the_loaded_version(server, client):
    version, signatures = client.metadata()
    assert version == 1 and set(signatures) == set(SIGNATURES) | {"__saved_model_init_op"}  # as TF Serving
    assert signatures["serving_default"].inputs["history"].dtype == 7  # DT_STRING
    assert client.status() == [{"version": 1, "state": "AVAILABLE", "error_code": 0, "error_message": ""}]
    stub = prediction_service_pb2_grpc.PredictionServiceStub(client.channel)
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "sasrec"
    with pytest.raises(grpc.RpcError) as info:
        stub.GetModelMetadata(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# ------------------------------------------------------------------------------- versions
def test_a_new_version_is_served_without_restart_and_no_request_fails_during_the_switch(server, base, trained):
    widths: list[int] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def hammer() -> None:
        with PredictionClient(server.address, "live", timeout=60) as live:
            while not stop.is_set():
                try:
                    widths.append(live.recommend([["sku-1", "sku-2"]]).item_ids.shape[1])
                except BaseException as err:  # noqa: BLE001
                    failures.append(err)
                    return

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        export_saved_model(trained, base, "live", k=3, warmup=False)  # version 2 returns 3 items
        with PredictionClient(server.address, "live", timeout=30) as live:
            deadline = time.monotonic() + 60
            while (live.status()[0]["version"], live.status()[0]["state"]) != (2, "AVAILABLE"):
                assert time.monotonic() < deadline, "version 2 was not picked up"
                time.sleep(0.1)
            assert live.recommend([["sku-1"]]).item_ids.shape == (1, 3)
            assert codes(lambda: live.recommend([["sku-1"]], version=1)).code == grpc.StatusCode.NOT_FOUND
            assert [(s["version"], s["state"]) for s in live.status()] == [(2, "AVAILABLE"), (1, "END")]
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not failures and widths and set(widths) <= {K, 3}
    assert widths[-1] == 3 and sorted(widths, key=lambda w: w == 3) == widths  # never back to v1


def test_version_policies_follow_tf_serving():
    disk = [1, 2, 5]
    assert ModelSource("m", Path(".")).wanted(disk) == {5}  # --model_base_path: latest {1}
    assert ModelSource("m", Path("."), "latest", num_versions=2).wanted(disk) == {2, 5}
    assert ModelSource("m", Path("."), "all").wanted(disk) == {1, 2, 5}
    assert ModelSource("m", Path("."), "specific", versions=(1, 3)).wanted(disk) == {1}
    assert ModelSource("m", Path(".")).wanted([]) == set()


def test_the_deployment_models_config_drives_labels_locally(base):
    sources = read_model_config(ROOT / "serving" / "models.config", model_base=base)
    [source] = [s for s in sources if s.name == "sasrec"]
    assert source.base_path == base / "sasrec" and dict(source.labels) == {"stable": 1}
    with pytest.raises(ValueError, match="Failed to start server: Request to assign label 'stable' to version 1"):
        LocalModelServer(base, model_config_file=ROOT / "serving" / "models.config", port=0, poll_seconds=0).start()
    with LocalModelServer(base, model_config_file=ROOT / "serving" / "models.config", port=0, poll_seconds=0,
                          allow_version_labels_for_unavailable_models=True) as configured:  # as shipped
        with PredictionClient(configured.address, "sasrec", label="stable", timeout=30) as stable:
            assert stable.recommend([["sku-3"]]).item_ids.shape == (1, K)
            assert stable.status()[0]["version"] == 1
        with PredictionClient(configured.address, "sasrec", label="canary", timeout=30) as canary:
            assert codes(lambda: canary.recommend([["sku-3"]])).code == grpc.StatusCode.INVALID_ARGUMENT


# ------------------------------------------------------------------------------- REST
def test_rest_client_gets_the_same_answers_in_both_formats(server, client, trained):
    rest = RestClient(f"http://127.0.0.1:{server.rest_port}", "sasrec", timeout=30)
    histories = sample_histories(trained, count=4, seed=31)
    via_grpc = client.recommend(histories)
    via_rest = rest.recommend(histories)
    np.testing.assert_array_equal(via_rest.item_ids, via_grpc.item_ids)
    np.testing.assert_allclose(via_rest.scores, via_grpc.scores, rtol=1e-6)
    rows = rest.predict({"history": history_tensor(histories)}, fmt="instances", version=1)
    np.testing.assert_array_equal(rows["item_ids"], via_grpc.item_ids)
    assert rest.status()["model_version_status"][0]["state"] == "AVAILABLE"
    assert set(rest.metadata()["metadata"]["signature_def"]["signature_def"]) >= set(SIGNATURES)
    error = codes(lambda: RestClient(rest.base_url, "nope").recommend([["a"]]))
    assert (error.code, error.http_status) == (grpc.StatusCode.NOT_FOUND, 404)
    error = codes(lambda: rest.predict({"history": np.array([[1, 2]])}))
    assert (error.code, error.http_status) == (grpc.StatusCode.INVALID_ARGUMENT, 400)


def test_rest_requests_follow_tf_servings_url_and_body_formats():
    rest = RestClient("http://serving.example:8501/", "recs")
    request = rest.predict_request({"history": history_tensor([["a", "é"]])}, "score", version=3)
    assert request.full_url == "http://serving.example:8501/v1/models/recs/versions/3:predict"
    assert json.loads(request.data) == {"signature_name": "score", "inputs": {"history": [["", "a", "é"]]}}
    request = rest.predict_request({"history": history_tensor([["a"], []])}, fmt="instances", label="canary")
    assert request.full_url.endswith("/v1/models/recs/labels/canary:predict")
    assert json.loads(request.data)["instances"] == [{"history": ["", "a"]}, {"history": ["", ""]}]


# ------------------------------------------------------------------------------- the command
def test_sasrec_tf_serve_answers_grpc_and_stops_on_sigterm(base, trained):
    process = subprocess.Popen(
        [sys.executable, "-m", "sasrec_tf.cli", "serve", "--model-base", str(base), "--port", "0",
         "--poll-seconds", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout=120)
        assert lines and " on 127.0.0.1:" in lines[0], (lines, process.poll())
        address = lines[0].split(" on ", 1)[1].split(" ", 1)[0]
        with PredictionClient(address, "sasrec", timeout=30) as remote:
            histories = sample_histories(trained, count=2, seed=41)
            top = remote.recommend(histories)
        check_top_k(trained, histories, top.item_ids, top.scores)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()


def test_raw_predict_request_with_tf_make_tensor_proto_works_like_any_tf_serving_client(client, trained):
    import tensorflow as tf

    stub = prediction_service_pb2_grpc.PredictionServiceStub(client.channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "sasrec"
    request.inputs["history"].CopyFrom(tf.make_tensor_proto([["", "sku-4", "sku-5"]]))
    response = stub.Predict(request, timeout=30)
    assert (response.model_spec.version.value, response.model_spec.signature_name) == (1, "serving_default")
    ids = [x.decode() for x in tf.make_ndarray(response.outputs["item_ids"])[0]]
    check_top_k(trained, [["sku-4", "sku-5"]], [ids], tf.make_ndarray(response.outputs["scores"]))


def test_batcher_merges_concurrent_requests_pads_like_tf_serving_and_splits_results():
    from sasrec_tf.serving.batching import Batcher

    calls, gate = [], threading.Event()

    def run(inputs):
        calls.append({k: v.copy() for k, v in inputs.items()})
        gate.wait(timeout=10)  # hold the first batch so that the others queue up behind it
        return {"first": inputs["x"][:, 0], "width": np.full(len(inputs["x"]), inputs["x"].shape[1])}

    batcher = Batcher(run, max_batch_size=8)
    results = {}
    requests = {i: np.array([[100 + i] + [0] * i] * (1 + i % 2), dtype=np.int64) for i in range(5)}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, batcher({"x": requests[i]})))
               for i in range(5)]
    def wait_for(condition):
        deadline = time.monotonic() + 10
        while not condition():
            assert time.monotonic() < deadline
            time.sleep(0.01)

    threads[0].start()
    wait_for(lambda: len(calls) == 1)  # the first request runs alone and is held at the gate
    for thread in threads[1:]:
        thread.start()
    wait_for(lambda: sum(len(batch) for batch in batcher._batches) == 4)
    gate.set()
    for thread in threads:
        thread.join(timeout=10)
    assert len(calls) == 2 and calls[1]["x"].shape == (6, 5)  # requests 1-4 (6 rows) merged, padded to width 5
    # Padded at the end with the request's first element, as TF Serving does.
    assert list(calls[1]["x"][0]) == [101, 0, 101, 101, 101]
    for i, request in requests.items():
        assert list(results[i]["first"]) == [100 + i] * len(request)
    batcher.close()
    assert batcher({"x": requests[2]})["width"].tolist() == [3]  # after close: unbatched


def test_batcher_gives_every_request_of_a_failed_batch_the_error():
    from sasrec_tf.serving.batching import Batcher

    def run(inputs):
        time.sleep(0.05)
        raise ValueError("boom")

    batcher = Batcher(run, max_batch_size=8)
    errors = []

    def call():
        try:
            batcher({"x": np.zeros((1, 2))})
        except ValueError as err:
            errors.append(err)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    batcher.close()
    assert len(errors) == 4


@pytest.mark.parametrize("flags, message", [
    (["--port", "70000"], "--port must be a TCP port, 1-65535 (or 0 for any free port), got 70000"),
    (["--port", "65536"], "--port must be a TCP port"),
    (["--port", "-1"], "--port must be a TCP port"),
    (["--rest-port", "99999"], "--rest-port must be a TCP port"),
    (["--enable-batching", "--max-batch-size", "0"], "--max-batch-size must be at least 1, got 0"),
    (["--num-batch-threads", "-2"], "--num-batch-threads must be at least 1"),
    (["--workers", "0"], "--workers must be at least 1"),
    (["--max-request-elements", "0"], "--max-request-elements must be at least 1"),
    (["--max-request-cells", "0"], "--max-request-cells must be at least 1"),
    (["--rest-max-connections", "0"], "--rest-max-connections must be at least 1"),
    (["--max-enqueued-batches", "0"], "--max-enqueued-batches must be at least 1"),
    (["--intra-op-threads", "-1"], "--intra-op-threads must be at least 0"),
    (["--poll-seconds", "nan"], "--poll-seconds must be a number of seconds >= 0"),
    (["--poll-seconds", "-1"], "--poll-seconds must be"),
    (["--rest-read-timeout", "0"], "--rest-read-timeout must be a number of seconds > 0"),
    (["--batching-parameters-file", "serving/batching_parameters.txt"], "needs --enable-batching"),
    (["--max-num-load-retries", "-1"], "--max-num-load-retries must be at least 0"),
    (["--load-retry-interval-seconds", "inf"], "--load-retry-interval-seconds must be"),
])
def test_sasrec_tf_serve_refuses_impossible_settings_in_one_line(flags, message, tmp_path, capsys):
    from sasrec_tf.cli import main

    assert main(["serve", "--model-base", str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err
    assert err == f"sasrec-tf: error: {err.split('error: ', 1)[1]}" and err.count("\n") == 1 and message in err


def test_with_batching_fixed_width_histories_are_served_and_oversize_requests_are_refused(batching_server, trained):
    import tensorflow as tf

    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(batching_server.address))
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "sasrec"
    request.inputs["history"].CopyFrom(tf.make_tensor_proto([["sku-4", "sku-5"]]))  # no leading "": as TF Serving,
    reply = stub.Predict(request, timeout=30)  # served (padding happens only where merged widths differ)
    ids = [[x.decode() for x in row] for row in tf.make_ndarray(reply.outputs["item_ids"])]
    check_top_k(trained, [["sku-4", "sku-5"]], ids, tf.make_ndarray(reply.outputs["scores"]))
    histories = sample_histories(trained, count=20, seed=61)  # the server's max_batch_size is 16
    with PredictionClient(batching_server.address, "sasrec", timeout=30, max_batch_size=None) as whole:
        error = codes(lambda: whole.recommend(histories))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "Task size 20 is larger than maximum input batch size 16" in error.details
    with PredictionClient(batching_server.address, "sasrec", timeout=30, max_batch_size=16) as split:
        top = split.recommend(histories)  # two requests, 16 + 4 rows, answers in order
    check_top_k(trained, histories, top.item_ids, top.scores)


def test_clients_split_requests_larger_than_max_batch_size_and_keep_the_order(server, trained):
    histories = sample_histories(trained, count=7, seed=71)
    candidates = [[trained.vocab.ids[i], "nope"] for i in range(7)]
    with PredictionClient(server.address, "sasrec", timeout=30, max_batch_size=3) as split, \
            PredictionClient(server.address, "sasrec", timeout=30, max_batch_size=None) as whole:
        np.testing.assert_array_equal(split.recommend(histories).item_ids, whole.recommend(histories).item_ids)
        for a, b in zip(split.score(histories, candidates), whole.score(histories, candidates)):
            np.testing.assert_allclose(a, b, rtol=1e-4)
    rest = RestClient(f"http://127.0.0.1:{server.rest_port}", "sasrec", timeout=30, max_batch_size=2)
    top = rest.recommend(histories)  # four requests: 2 + 2 + 2 + 1 rows
    check_top_k(trained, histories, top.item_ids, top.scores)
    with pytest.raises(ValueError, match="max_batch_size"):
        PredictionClient(server.address, "sasrec", max_batch_size=0)


def _wait(condition, seconds=60.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _state(client, version):
    try:
        return client.status(version=version)[0]["state"]
    except ServingError as err:
        return err.code.name


def test_a_version_failing_at_run_time_is_retried_then_end_while_the_old_one_serves(base, tmp_path):
    """TF Serving's availability-preserving policy (availability_preserving_policy.cc ~65-75) keeps the
    old version while the new one retries and fails; the error is END with TensorFlow's code."""
    good = base / "sasrec" / "1"
    models = tmp_path / "models"
    shutil.copytree(good, models / "m" / "1")
    with LocalModelServer(models, port=0, poll_seconds=0, load_retries=1, load_retry_seconds=0) as server, \
            PredictionClient(server.address, "m", timeout=30) as m:
        (models / "m" / "2").mkdir()
        (models / "m" / "2" / "saved_model.pb").write_bytes(b"corrupt")
        server.manager.poll()  # the first attempt fails, one retry left
        assert _state(m, 2) == "LOADING" and m.recommend([["sku-1"]]).item_ids.shape == (1, K)
        server.manager.poll()
        [status] = m.status(version=2)
        assert status["state"] == "END" and status["error_code"] == grpc.StatusCode.DATA_LOSS.value[0]
        assert "parse" in status["error_message"]
        assert m.recommend([["sku-1"]]).item_ids.shape == (1, K) and _state(m, 1) == "AVAILABLE"


def test_latest_n_serves_the_other_versions_while_the_newest_fails_at_run_time(base, tmp_path):
    shutil.copytree(base / "sasrec" / "1", tmp_path / "m" / "1")
    config = tmp_path / "models.config"
    config.write_text(f'model_config_list {{ config {{ name: "m" base_path: "{tmp_path / "m"}" '
                      'model_platform: "tensorflow" model_version_policy { latest { num_versions: 2 } } } }')
    with LocalModelServer(model_config_file=config, port=0, poll_seconds=0, load_retries=0) as server, \
            PredictionClient(server.address, "m", timeout=30) as m:
        (tmp_path / "m" / "2").mkdir()
        (tmp_path / "m" / "2" / "saved_model.pb").write_bytes(b"corrupt")
        server.manager.poll()
        assert m.recommend([["sku-1"]]).item_ids.shape == (1, K)
        assert [(s["version"], s["state"]) for s in m.status()] == [(2, "END"), (1, "AVAILABLE")]


def test_a_removed_model_base_is_logged_once_not_every_poll(base, tmp_path, caplog):
    import logging

    models = tmp_path / "models"
    shutil.copytree(base / "sasrec" / "1", models / "m" / "1")
    with LocalModelServer(models, port=0, poll_seconds=0.05) as server, caplog.at_level(logging.INFO):
        shutil.rmtree(models)
        time.sleep(1.0)  # about 20 polls
        failures = [r for r in caplog.records if "polling the model directories failed" in r.getMessage()]
        assert len(failures) == 1 and failures[0].exc_info is None and "model base" in failures[0].getMessage()
        with PredictionClient(server.address, "m", timeout=30) as m:  # what was loaded is still served
            assert m.recommend([["sku-1"]]).item_ids.shape == (1, K)
        models.mkdir()
        _wait(lambda: any("works again" in r.getMessage() for r in caplog.records))


def _fuzz_request(rng: np.random.Generator, ids: list[str]):
    """A random PredictRequest around the boundary: names, dtypes, shapes, declared vs actual sizes, ids."""
    from tensorflow.core.framework import tensor_pb2, types_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "sasrec"
    request.model_spec.signature_name = str(rng.choice([*SIGNATURES, "serving_default", "", "nope"]))
    names = [n for n in ("history", "candidates", "item_ids", "junk") if rng.random() < 0.5] or ["history"]
    numbers = {types_pb2.DT_INT64: "int64_val", types_pb2.DT_INT32: "int_val", types_pb2.DT_FLOAT: "float_val",
               types_pb2.DT_BOOL: "bool_val", types_pb2.DT_DOUBLE: "double_val", types_pb2.DT_HALF: "half_val"}
    for name in names:
        dtype = int(rng.choice([types_pb2.DT_STRING] * 6 + list(numbers) + [types_pb2.DT_RESOURCE, 0, 999]))
        proto = tensor_pb2.TensorProto(dtype=dtype)
        rank = int(rng.choice([0, 1, 2, 2, 2, 3]))
        dims = [int(rng.choice([0, 1, 2, 3, 4, 6, -1, 10**6, 2**40])) if rng.random() < 0.15
                else int(rng.integers(1, 6)) for _ in range(rank)]
        proto.tensor_shape.unknown_rank = bool(rng.random() < 0.03)
        for size in dims:
            proto.tensor_shape.dim.add(size=size)
        declared = int(np.prod([max(d, 0) for d in dims])) if all(0 <= d <= 64 for d in dims) else 3
        count = max(0, declared + int(rng.choice([0, 0, 0, 0, -1, 1, -declared])))
        if dtype == types_pb2.DT_STRING:
            pool = [i.encode() for i in ids[:20]] + [b"", b"nope", b"\xff\xfe", "é".encode(), b"x" * 300]
            values = [b""] + [pool[int(rng.integers(len(pool)))] for _ in range(max(0, count - 1))]
            proto.string_val.extend(values[:count])
        elif dtype in numbers and rng.random() < 0.5:
            item = {types_pb2.DT_INT64: 8, types_pb2.DT_INT32: 4, types_pb2.DT_FLOAT: 4, types_pb2.DT_BOOL: 1,
                    types_pb2.DT_DOUBLE: 8, types_pb2.DT_HALF: 2}[dtype]
            proto.tensor_content = rng.bytes(count * item + int(rng.choice([0, 0, 0, 1])))
        elif dtype in numbers:
            getattr(proto, numbers[dtype]).extend([int(v) for v in rng.integers(0, 2, count)])
        request.inputs[name].CopyFrom(proto)
    return request


def test_fuzzed_requests_get_a_correct_answer_or_a_clean_invalid_argument_and_the_server_survives(client, trained):
    import tensorflow as tf

    stub = prediction_service_pb2_grpc.PredictionServiceStub(client.channel)
    rng = np.random.default_rng(20261128)
    ids = list(trained.vocab.ids)
    outcomes: dict[str, int] = {}
    for _ in range(1500):  # a fixed, seeded set of requests (about 2 s on a quiet 2-core machine)
        request = _fuzz_request(rng, ids)
        try:
            response = stub.Predict(request, timeout=30)
        except grpc.RpcError as err:
            unknown_signature = request.model_spec.signature_name not in ("", *SIGNATURES)
            allowed = {grpc.StatusCode.INVALID_ARGUMENT} | ({grpc.StatusCode.FAILED_PRECONDITION}
                                                             if unknown_signature else set())
            assert err.code() in allowed, (err.code(), err.details(), request)
            assert "Traceback" not in err.details() and len(err.details()) < 2000
            outcomes[err.code().name] = outcomes.get(err.code().name, 0) + 1
            continue
        outcomes["OK"] = outcomes.get("OK", 0) + 1
        for proto in request.inputs.values():  # answered only what was sent: no row made up
            sent = len(proto.string_val) or len(proto.int64_val) or len(proto.tensor_content)
            assert sent == np.prod([d.size for d in proto.tensor_shape.dim]) or not sent, request
        if request.model_spec.signature_name in ("", "serving_default"):
            history = tf.make_ndarray(request.inputs["history"])
            if not history.shape[0]:
                assert response.outputs["item_ids"].tensor_shape.dim[0].size == 0
                continue
            histories = [[v.decode("utf-8", "replace") for v in row] for row in history]
            got = [[v.decode() for v in row] for row in tf.make_ndarray(response.outputs["item_ids"])]
            check_top_k(trained, histories, got, tf.make_ndarray(response.outputs["scores"]))
    assert outcomes.get("OK", 0) >= 5 and outcomes.get("INVALID_ARGUMENT", 0) >= 20, outcomes
    histories = sample_histories(trained, count=3, seed=91)  # and the server still answers correctly
    top = client.recommend(histories)
    check_top_k(trained, histories, top.item_ids, top.scores)


def test_the_next_export_removes_staging_directories_of_killed_exports_but_not_live_ones(trained, tmp_path):
    import os

    from sasrec_tf.export import STALE_EXPORT_SECONDS

    root = tmp_path / "sasrec"
    killed, live = root / ".tmp-export-killed", root / ".tmp-export-live"
    (killed / "variables").mkdir(parents=True)
    (killed / "variables" / "variables.index").write_bytes(b"partial")
    (live / "variables").mkdir(parents=True)
    old = time.time() - STALE_EXPORT_SECONDS - 60
    for path in (killed / "variables" / "variables.index", killed / "variables", killed):
        os.utime(path, (old, old))
    os.utime(live, (old, old))  # the directory is old, but a file inside is being written now
    (live / "variables" / "variables.data").write_bytes(b"writing")
    assert export_saved_model(trained, tmp_path, "sasrec", k=K, warmup=False) == root / "1"
    assert not killed.exists() and live.exists()
    assert sorted(p.name for p in root.iterdir()) == [".tmp-export-live", "1"]


def test_the_shipped_deployment_files_agree_with_each_other_and_with_the_clients():
    import re

    from sasrec_tf.serving.batching import read_batching_parameters
    from sasrec_tf.serving.client import DEFAULT_MAX_BATCH_SIZE

    batching = read_batching_parameters(ROOT / "serving" / "batching_parameters.txt")
    assert batching["max_batch_size"] == DEFAULT_MAX_BATCH_SIZE  # clients split where the server refuses
    deployment = (ROOT / "serving" / "k8s" / "deployment.yaml").read_text()
    cpus = int(re.search(r'cpu: "(\d+)"', deployment).group(1))
    assert batching["num_batch_threads"] <= cpus  # one batch thread per core
    assert "startupProbe" in deployment  # liveness must not kill a pod that is still loading
    readme = (ROOT / "serving" / "README.md").read_text()
    assert "two config edits" in readme and "point `canary` at it" not in readme
    monitoring = (ROOT / "serving" / "monitoring.config").read_text() + readme
    assert "request_count{model_name,status}" in monitoring.replace(" ", "")
    assert "JSON has no `-inf`" not in readme


def test_warmup_fails_the_load_beyond_1000_records_or_on_a_log_it_cannot_replay(base, tmp_path):
    import tensorflow as tf
    from tensorflow_serving.apis import classification_pb2, prediction_log_pb2

    from sasrec_tf.serving.errors import StatusError
    from sasrec_tf.serving.servable import WARMUP_PATH, Servable

    good = base / "sasrec" / "1"
    records = list(tf.data.TFRecordDataset(str(good / WARMUP_PATH)).as_numpy_iterator())
    classify = prediction_log_pb2.PredictionLog(
        classify_log=prediction_log_pb2.ClassifyLog(request=classification_pb2.ClassificationRequest()))
    for name, log, code, message in [
        ("many", records * (1000 // len(records) + 1), grpc.StatusCode.INVALID_ARGUMENT, "exceeds the maximum (1000)"),
        ("classify", records[:1] + [classify.SerializeToString()], grpc.StatusCode.UNIMPLEMENTED, "classify_log"),
    ]:
        version = tmp_path / name
        shutil.copytree(good, version)
        with tf.io.TFRecordWriter(str(version / WARMUP_PATH)) as writer:
            for record in log:
                writer.write(record)
        servable = Servable("sasrec", 1, version)
        with pytest.raises(StatusError) as info:
            servable.warmup()
        assert info.value.code == code and message in info.value.message
        servable.close()
    assert Servable("sasrec", 1, good).warmup() == len(records)


def test_a_server_with_labels_starts_only_with_the_flag_and_a_new_label_may_wait_for_its_version(base, tmp_path):
    """server_core.cc ~514, ~576-583: at start-up labels are assigned before anything loads, so any
    label needs --allow_version_labels_for_unavailable_models (main.cc ~342-345 "Failed to start server")."""
    shutil.copytree(base / "sasrec" / "1", tmp_path / "m" / "1")
    with pytest.raises(ValueError, match="Failed to start server: Request to assign label 'stable' to version 1 "
                                         "of model 'm', which is not currently available"):
        LocalModelServer(tmp_path, port=0, poll_seconds=0, labels={"m": {"stable": 1}}).start()
    with LocalModelServer(tmp_path, port=0, poll_seconds=0, labels={"m": {"stable": 1, "canary": 2}},
                          allow_version_labels_for_unavailable_models=True) as allowed, \
            PredictionClient(allowed.address, "m", timeout=30) as m:  # a new label may wait for its version
        assert codes(lambda: m.recommend([["sku-1"]], label="canary")).code == grpc.StatusCode.NOT_FOUND
        assert m.recommend([["sku-1"]], label="stable").item_ids.shape == (1, K)


@pytest.mark.parametrize("settings, message", [
    ({"port": 70000}, "port must be a TCP port"),
    ({"rest_port": -1}, "rest_port must be a TCP port"),
    ({"enable_batching": True, "max_batch_size": 0}, "max_batch_size must be at least 1"),
    ({"max_request_elements": 0}, "max_request_elements must be at least 1"),
    ({"rest_read_timeout": float("nan")}, "rest_read_timeout must be > 0"),
])
def test_local_model_server_refuses_impossible_settings(settings, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        LocalModelServer(tmp_path, **settings)


def test_a_batching_parameters_file_is_read_as_tf_servings_proto_with_its_defaults(tmp_path):
    from sasrec_tf.serving.batching import BATCHING_DEFAULTS, read_batching_parameters

    path = tmp_path / "batching_parameters.txt"
    path.write_text("max_batch_size { value: 0 }\npad_variable_length_inputs: true\n")
    with pytest.raises(ValueError, match="must be >= 1"):
        read_batching_parameters(path)
    path.write_text("num_batch_threads { value: 3 }  # per core\n")
    assert read_batching_parameters(path) == {**BATCHING_DEFAULTS, "num_batch_threads": 3}
    assert BATCHING_DEFAULTS["max_batch_size"] == 1000 and BATCHING_DEFAULTS["max_enqueued_batches"] == 10
    assert read_batching_parameters(ROOT / "serving" / "batching_parameters.txt") == {
        "max_batch_size": 64, "num_batch_threads": 2, "max_enqueued_batches": 256, "pad_variable_length_inputs": True}
