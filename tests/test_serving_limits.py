"""What a request may cost the local server, and what a hostile client cannot do to it (issue 28):
the work and the reply of a Predict bounded before anything is computed, the REST boundary's
deadline (headers and body together) and connection cap, 400 (never 500) for malformed REST
bodies, a seeded REST fuzz, and version directories that are not int64 ASCII digits ignored."""

import http.client
import json
import shutil
import socket
import threading
import time

import grpc
import numpy as np
import pytest
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from sasrec_tf.export import export_saved_model
from sasrec_tf.export.contract import MAX_VERSION, parse_version
from sasrec_tf.export.publish import list_versions, next_version
from sasrec_tf.serving import LocalModelServer, PredictionClient
from sasrec_tf.serving.options import DEFAULTS
from sasrec_tf.serving.rest_server import DeadlineReader
from sasrec_tf.serving.servable import Servable
from sasrec_tf.testing.models import TRAINED_NUM_ITEMS
from test_export import K, check_top_k, sample_histories


@pytest.fixture(scope="module")
def base(trained, tmp_path_factory):
    base = tmp_path_factory.mktemp("limits")
    export_saved_model(trained, base, "sasrec", k=K)
    return base


@pytest.fixture(scope="module")
def server(base):
    with LocalModelServer(base, port=0, rest_port=0, poll_seconds=0) as server:
        yield server


@pytest.fixture
def no_scoring(monkeypatch):
    """Call it (after the servers are loaded: warmup runs the model) to fail any request that reaches the
    model (the scoring) at all; it returns the list of such calls."""
    calls = []

    def run(self, *args, **kwargs):
        calls.append(args)
        raise AssertionError("the request reached the scoring")

    def arm():
        monkeypatch.setattr(Servable, "run", run)
        return calls

    return arm


def _request(rows: int, width: int = 1, signature: str = "serving_default") -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "sasrec"
    request.model_spec.signature_name = signature
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING)
    proto.tensor_shape.dim.add(size=rows)
    proto.tensor_shape.dim.add(size=width)
    proto.string_val.extend([b"sku-1"] * (rows * width))
    request.inputs["history"].CopyFrom(proto)
    return request


def _predict(server, request):
    with grpc.insecure_channel(server.address, options=[("grpc.max_send_message_length", 1 << 26)]) as channel:
        return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=120)


def _rest(server, body, path="/v1/models/sasrec:predict", method="POST"):
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=60)
    try:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        connection.request(method, path, body=data if method == "POST" else None,
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


# ------------------------------------------------------------------------------- item 3: cost
def test_a_million_one_item_histories_are_refused_before_any_scoring_with_how_to_split(server, no_scoring):
    calls = no_scoring()
    rows = DEFAULTS.max_request_elements  # inside --max-request-elements: 8 MB of request
    with pytest.raises(grpc.RpcError) as info:
        _predict(server, _request(rows))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    details = info.value.details()
    fit = DEFAULTS.max_request_cells // (TRAINED_NUM_ITEMS + 1)
    assert f"at most {DEFAULTS.max_request_cells:,}" in details and f"at most {fit:,} rows" in details
    assert calls == []


def test_a_reply_over_the_message_limit_is_resource_exhausted_before_scoring(base, no_scoring):
    with LocalModelServer(base, port=0, poll_seconds=0, max_message_bytes=20_000) as small:
        calls = no_scoring()
        with pytest.raises(grpc.RpcError) as info:
            _predict(small, _request(500))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "message limit of 20,000" in info.value.details() and "split it into requests of at most" in info.value.details()
    assert calls == []


def test_the_largest_request_inside_the_limit_is_answered_and_one_row_more_is_refused(base, trained):
    cells = 40 * (TRAINED_NUM_ITEMS + 1)  # the score table of 40 rows
    with LocalModelServer(base, port=0, rest_port=0, poll_seconds=0, max_request_cells=cells) as small:
        histories = [[trained.vocab.ids[i]] for i in range(40)]  # short: the score table is the largest
        with PredictionClient(small.address, "sasrec", timeout=60, max_batch_size=1000) as client:
            top = client.recommend(histories)
            check_top_k(trained, histories, top.item_ids, top.scores)
        with pytest.raises(grpc.RpcError) as info:
            _predict(small, _request(41))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "at most 40 rows" in info.value.details()
        status, body = _rest(small, {"inputs": {"history": [["sku-1"]] * 41}})
        assert status == 400 and b"at most 40 rows" in body
        status, _ = _rest(small, {"inputs": {"history": [["sku-1"]] * 40}})
        assert status == 200


# ------------------------------------------------------------------------------- item 4: slow-loris
def test_the_deadline_bounds_everything_read_not_each_recv():
    now = [0.0]
    ours, theirs = socket.socketpair()
    with ours, theirs:
        reader = DeadlineReader(ours, lambda: now[0])
        reader.deadline = 30.0
        buffer = bytearray(16)
        for second in range(29):  # a byte a second: each recv is quick, the request is not
            now[0] = float(second)
            theirs.sendall(b"x")
            assert reader.readinto(buffer) == 1
        now[0] = 30.0
        theirs.sendall(b"x")  # data is there, but the deadline has passed
        with pytest.raises(TimeoutError):
            reader.readinto(buffer)


def _read_all(sock) -> bytes:
    chunks = [sock.recv(65536)]
    while chunks[-1]:
        chunks.append(sock.recv(65536))
    return b"".join(chunks)


def test_a_trickled_body_or_trickled_headers_meet_one_deadline(base):
    ticks = [0.0]

    def clock():  # every look at the clock is a second later: a trickle that never ends
        ticks[0] += 1.0
        return ticks[0]

    with LocalModelServer(base, port=0, rest_port=0, poll_seconds=0, rest_read_timeout=5, clock=clock) as server:
        with socket.create_connection(("127.0.0.1", server.rest_port), timeout=60) as sock:
            sock.sendall(b"POST /v1/models/sasrec:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 4000\r\n\r\n")
            answer = b""
            for _ in range(4000):  # would complete the body; the deadline comes first
                try:
                    sock.sendall(b" ")
                except OSError:
                    break
                time.sleep(0.005)
                sock.setblocking(False)
                try:
                    answer = sock.recv(65536)
                except BlockingIOError:
                    continue
                finally:
                    sock.setblocking(True)
                break
            sock.settimeout(60)
            answer += _read_all(sock)
        assert answer.startswith(b"HTTP/1.1 408 ") and b"did not arrive within 5 s" in answer
        with socket.create_connection(("127.0.0.1", server.rest_port), timeout=60) as sock:
            for byte in b"GET /v1/models/sasrec HTTP/1.1\r\nHost: x\r\n":
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    break
                time.sleep(0.005)
            sock.settimeout(60)
            assert _read_all(sock) == b""  # closed, never answered


def test_connections_over_the_cap_are_answered_503_and_the_threads_stay_bounded(base):
    with LocalModelServer(base, port=0, rest_port=0, poll_seconds=0, rest_max_connections=2) as server:
        before = threading.active_count()
        held = [socket.create_connection(("127.0.0.1", server.rest_port), timeout=60) for _ in range(2)]
        try:
            for sock in held:
                sock.sendall(b"GET /v1/models/sasrec HTTP/1.1\r\n")  # and never finished
            extra = [socket.create_connection(("127.0.0.1", server.rest_port), timeout=60) for _ in range(20)]
            for sock in extra:
                with sock:
                    answer = _read_all(sock)
                    assert answer.startswith(b"HTTP/1.1 503 ") and b"at most 2 REST connections" in answer
            assert threading.active_count() - before <= 2
        finally:
            for sock in held:
                sock.close()
        for _ in range(200):  # the held connections' threads end as they see the close
            status, _ = _rest(server, None, path="/v1/models/sasrec", method="GET")
            if status == 200:
                break
            time.sleep(0.05)
        assert status == 200


# ------------------------------------------------------------------------------- item 5: 400, never 500
def _nested(depth: int):
    value = "sku-1"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("body, words", [
    ({"inputs": {"history": _nested(900)}}, "32 deep"),
    ({"instances": _nested(900)}, "deep"),
    ({"signature_name": ["serving_default"], "inputs": {"history": [["sku-1"]]}}, "'signature_name' must be a string"),
    ({"inputs": {"history": [[{"b64": "!!not base64!!"}]]}}, "invalid base64"),
    ({"inputs": {"history": [[{"b64": "@@@@"}]]}}, "invalid base64"),  # was silently b""
    ({"inputs": {"history": [[{"b64": 7}]]}}, "must be a string"),
])
def test_malformed_rest_bodies_are_400_with_a_clear_message(server, body, words):
    status, answer = _rest(server, body)
    assert status == 400, answer
    assert words in json.loads(answer)["error"]


@pytest.mark.parametrize("output_filter", [3, [3], ["scores"], "nope"])
def test_rest_ignores_output_filter_as_tf_serving_does(server, output_filter):
    """util/json_tensor.cc ~490-520 reads only signature_name and instances/inputs: every output comes back."""
    status, answer = _rest(server, {"output_filter": output_filter, "inputs": {"history": [["", "sku-1"]]}})
    assert status == 200, answer
    assert set(json.loads(answer)["outputs"]) == {"item_ids", "scores", "known_items"}


def test_valid_base64_still_decodes(server):
    status, answer = _rest(server, {"inputs": {"history": [[{"b64": "c2t1LTE="}]]}})  # "sku-1"
    assert status == 200, answer


def _fuzz_body(rng: np.random.Generator, ids: list[str]):
    """A random REST Predict body around the boundary: nesting, types, sizes, base64, bytes."""
    def value(depth=0):
        kind = rng.integers(9)
        if kind == 0 or depth > 3:
            return str(rng.choice(ids + ["", "nope", "é"]))
        if kind == 1:
            return int(rng.integers(-5, 5))
        if kind == 2:
            return [value(depth + 1) for _ in range(int(rng.integers(0, 4)))]
        if kind == 3:
            return {"b64": str(rng.choice(["c2t1LTE=", "!!", "abc", ""]))}
        if kind == 4:
            return None
        if kind == 5:
            return _nested(int(rng.choice([2, 33, 200, 900])))
        if kind == 6:
            return {"x": 1}
        width = int(rng.integers(0, 4))
        return [[str(rng.choice(ids)) for _ in range(width)] for _ in range(int(rng.choice([0, 1, 3, 2000])))]

    roll = rng.random()
    if roll < 0.05:
        return rng.bytes(int(rng.integers(0, 64)))
    if roll < 0.1:
        return b'{"inputs": ' * int(rng.integers(1, 1000))
    body = {}
    for key in ("signature_name", "inputs", "instances", "output_filter"):
        if rng.random() < 0.5:
            body[key] = value()
    if rng.random() < 0.3:
        body["signature_name"] = str(rng.choice(["serving_default", "score", "embed", "item_embeddings", "nope"]))
    if rng.random() < 0.5:
        body.pop("instances", None)
        body["inputs"] = {str(rng.choice(["history", "candidates", "item_ids", "junk"])): value()}
    return body if rng.random() < 0.9 else [body]


def test_fuzzed_rest_requests_get_200_or_4xx_never_500_and_the_server_survives(server, trained):
    rng = np.random.default_rng(20261201)
    ids = list(trained.vocab.ids[:20])
    outcomes: dict[int, int] = {}
    for _ in range(400):  # a fixed, seeded set of requests
        body = _fuzz_body(rng, ids)
        status, answer = _rest(server, body)
        assert status == 200 or 400 <= status < 500, (status, answer[:500], str(body)[:500])
        if status != 200:
            assert "Traceback" not in json.loads(answer)["error"]
        outcomes[status] = outcomes.get(status, 0) + 1
    assert outcomes.get(200, 0) >= 5 and outcomes.get(400, 0) >= 50, outcomes
    histories = sample_histories(trained, count=3, seed=91)
    with PredictionClient(server.address, "sasrec", timeout=60) as client:
        top = client.recommend(histories)
    check_top_k(trained, histories, top.item_ids, top.scores)


# ------------------------------------------------------------------------------- item 11: versions
def test_a_version_is_int64_ascii_digits_and_anything_else_is_not():
    assert parse_version("1") == 1 and parse_version("007") == 7 and parse_version(str(MAX_VERSION)) == MAX_VERSION
    for name in ("²", "١٢", "99999999999999999999", str(MAX_VERSION + 1), "-1", "+1", " 1", "1e3", "", "1.0"):
        assert parse_version(name) is None, name


def test_export_refuses_a_version_over_int64_and_numbers_past_unicode_digit_directories(trained, tmp_path):
    with pytest.raises(ValueError, match="int64"):
        export_saved_model(trained, tmp_path, "sasrec", version=99999999999999999999, k=K)
    assert not (tmp_path / "sasrec" / "99999999999999999999").exists()
    (tmp_path / "sasrec" / "²").mkdir(parents=True)
    (tmp_path / "sasrec" / "99999999999999999999").mkdir()
    assert list_versions(tmp_path / "sasrec") == [] and next_version(tmp_path / "sasrec") == 1
    assert export_saved_model(trained, tmp_path, "sasrec", k=K).name == "1"
    assert list_versions(tmp_path / "sasrec") == [1]


def test_the_server_ignores_directories_that_are_not_versions_and_keeps_polling(base, tmp_path, trained):
    models = tmp_path / "models"
    shutil.copytree(base / "sasrec" / "1", models / "m" / "1")
    for name in ("²", "99999999999999999999"):
        shutil.copytree(base / "sasrec" / "1", models / "m" / name)
    with LocalModelServer(models, port=0, rest_port=0, poll_seconds=0.05) as server:
        # A model whose only child is "²" has no version: added after the start (a start would wait for one).
        shutil.copytree(base / "sasrec" / "1", models / "other" / "²")
        with PredictionClient(server.address, "m", timeout=60) as client:
            assert [row["version"] for row in client.status()] == [1]
            shutil.copytree(base / "sasrec" / "1", models / "m" / "2")  # polling still works
            for _ in range(400):
                if [row["version"] for row in client.status()] == [2, 1]:
                    break
                time.sleep(0.05)
            assert sorted(row["version"] for row in client.status()) == [1, 2]
        status, answer = _rest(server, None, path="/v1/models/m/versions/99999999999999999999", method="GET")
        assert status == 400 and b"int64" in answer
        status, _ = _rest(server, None, path="/v1/models/m/versions/%C2%B2", method="GET")
        assert status == 400


# ------------------------------------------------------------------------------- item 12: symlinks
def test_a_version_directory_linking_out_of_the_model_base_is_followed_as_tf_serving_does(base, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(base / "sasrec" / "1", elsewhere)
    (tmp_path / "models" / "m").mkdir(parents=True)
    (tmp_path / "models" / "m" / "3").symlink_to(elsewhere, target_is_directory=True)
    with LocalModelServer(tmp_path / "models", port=0, poll_seconds=0) as server:
        with PredictionClient(server.address, "m", timeout=60) as client:
            assert [row["version"] for row in client.status()] == [3]
            assert client.recommend([["sku-1"]]).item_ids.shape == (1, K)
