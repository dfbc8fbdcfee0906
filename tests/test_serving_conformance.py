"""One conformance suite, two servers: the shipped deployment files against the stand-in and TF Serving.

Every case runs against ``sasrec-tf serve``'s ``LocalModelServer`` and, when
``tensorflow_model_server`` is on PATH (or ``SASREC_TF_SERVING_BINARY`` names it), against the
real server started with **the shipped command line**: the flags of ``serving/docker-compose.yml``
(equal to ``serving/k8s/deployment.yaml``'s, a test checks), with only the file paths, the ports
and the two poll intervals replaced, over the shipped ``serving/models.config`` (its ``base_path``
pointed at a temporary export base) and ``serving/batching_parameters.txt``. The stand-in is built
from the same flags. The expectations are TF Serving 2.20.0's behaviour; each names the source
line (tensorflow/serving at tag 2.20.0) it comes from. Where the stand-in is deliberately stricter,
the case says so and runs on the stand-in only.
"""

import contextlib
import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from sasrec_tf.export import export_saved_model
from sasrec_tf.serving import LocalModelServer, PredictionClient, RestClient, ServingError
from sasrec_tf.serving.batching import read_batching_parameters
from sasrec_tf.serving.client import history_tensor
from sasrec_tf.testing import free_ports
from sasrec_tf.testing.serving import recommend_concurrently
from test_export import K, check_top_k, make_trained, sample_histories

ROOT = Path(__file__).resolve().parents[1]
MODELS_CONFIG = ROOT / "serving" / "models.config"
BATCHING = ROOT / "serving" / "batching_parameters.txt"
MONITORING = ROOT / "serving" / "monitoring.config"
COMPOSE = ROOT / "serving" / "docker-compose.yml"
K8S = ROOT / "serving" / "k8s" / "deployment.yaml"
BINARY = os.environ.get("SASREC_TF_SERVING_BINARY") or shutil.which("tensorflow_model_server")
CANARY_K = 3  # version 2 answers 3 items, version 1 K: the width tells which version answered
KINDS = ["stand-in", pytest.param("tensorflow_model_server", marks=pytest.mark.skipif(
    not BINARY, reason="no tensorflow_model_server on PATH (or SASREC_TF_SERVING_BINARY)"))]


def _config_text(base: Path, versions: list[int] | None = None, labels: dict[str, int] | None = None) -> str:
    """The shipped models.config with its base path under ``base``; ``versions`` and ``labels`` as an
    operator's edit would set them (None: as shipped)."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    text = MODELS_CONFIG.read_text(encoding="utf-8").replace('"/models/sasrec"', f'"{base / "sasrec"}"')
    if versions is None and labels is None:
        return text
    config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    [model] = config.model_config_list.config
    del model.model_version_policy.specific.versions[:]
    model.model_version_policy.specific.versions.extend(versions)
    model.version_labels.clear()
    model.version_labels.update(labels)
    return text_format.MessageToString(config)


def shipped_flags(path: Path = COMPOSE) -> dict[str, str]:
    """The ``--name=value`` flags a shipped file starts ``tensorflow_model_server`` with, in order."""
    return dict(re.findall(r"^\s*- --([a-z_]+)=(\S+)\s*(?:#.*)?$", path.read_text(encoding="utf-8"), re.MULTILINE))


def server_command(config: Path, grpc_port: int, rest_port: int, **changes: str) -> list[str]:
    """The shipped command line with local paths, ports and 1 s polls; ``changes`` override (or, None, drop) flags."""
    flags = shipped_flags()
    local = {"port": grpc_port, "rest_api_port": rest_port, "model_config_file": config,
             "model_config_file_poll_wait_seconds": 1, "file_system_poll_wait_seconds": 1,
             "batching_parameters_file": BATCHING, "monitoring_config_file": MONITORING}
    assert set(local) <= set(flags)  # only values change: the flags are the shipped ones
    flags.update({key: str(value) for key, value in local.items()})
    flags.update(changes)
    return [BINARY, *(f"--{key}={value}" for key, value in flags.items() if value is not None)]


def stand_in(config: Path, **changes: str) -> LocalModelServer:
    """``LocalModelServer`` set up by the shipped flags (what ``sasrec-tf serve`` takes from each)."""
    flags = {**shipped_flags(), **changes}
    batching = flags.get("enable_batching") == "true"
    return LocalModelServer(
        model_config_file=config, port=0, rest_port=0, poll_seconds=0.2, enable_batching=batching,
        allow_version_labels_for_unavailable_models=flags.get("allow_version_labels_for_unavailable_models") == "true",
        **(read_batching_parameters(BATCHING) if batching else {}))


class Deployment:
    """A running server over ``base`` with ``config`` (the shipped models.config, rewritten by tests)."""

    def __init__(self, kind: str, base: Path, config: Path, log: Path):
        self.kind, self.base, self.config = kind, base, config
        if kind == "stand-in":
            self._server = stand_in(config).start()
            self.address, self.rest_url = self._server.address, f"http://127.0.0.1:{self._server.rest_port}"
            return
        grpc_port, rest_port = free_ports(2)
        self._log = open(log, "w")
        self._process = subprocess.Popen(server_command(config, grpc_port, rest_port),
                                         stdout=self._log, stderr=subprocess.STDOUT)
        self.address, self.rest_url = f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{rest_port}"
        with self.client() as client:
            wait_for(lambda: _states(client).get(1) == "AVAILABLE", 120)

    def client(self, **options) -> PredictionClient:
        return PredictionClient(self.address, "sasrec", timeout=30, **options)

    def rewrite(self, versions: list[int], labels: dict[str, int]) -> None:
        """Edit the config as an operator would (an atomic replace, so no poll reads half a file)."""
        staged = self.config.with_suffix(".new")
        staged.write_text(_config_text(self.base, versions, labels), encoding="utf-8")
        os.replace(staged, self.config)

    def stop(self) -> None:
        if self.kind == "stand-in":
            self._server.stop()
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
        self._log.close()


def wait_for(condition, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _states(client: PredictionClient) -> dict[int, str]:
    try:
        return {s["version"]: s["state"] for s in client.status()}
    except ServingError:
        return {}


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """Version 1 (top K) and version 2 (top CANARY_K) of one trained model, to copy into deployments."""
    trained = make_trained(seed=3)
    store = tmp_path_factory.mktemp("conformance_exports")
    export_saved_model(trained, store, "sasrec", version=1, k=K)
    export_saved_model(trained, store, "sasrec", version=2, k=CANARY_K)
    return trained, store / "sasrec"


@contextlib.contextmanager
def deployed(kind: str, exports, tmp_path: Path):
    base = tmp_path / "base"
    shutil.copytree(exports[1] / "1", base / "sasrec" / "1")
    config = tmp_path / "models.config"
    config.write_text(_config_text(base), encoding="utf-8")  # the shipped file, its base path moved
    deployment = Deployment(kind, base, config, tmp_path / "server.log")
    try:
        yield deployment
    finally:
        deployment.stop()


@pytest.fixture(scope="module", params=KINDS)
def deployment(request, exports, tmp_path_factory):
    with deployed(request.param, exports, tmp_path_factory.mktemp(f"conformance_{request.param}")) as running:
        yield running


def error_of(call) -> ServingError:
    with pytest.raises(ServingError) as info:
        call()
    return info.value


# ------------------------------------------------------------------------------------ labels
@pytest.mark.parametrize("kind", KINDS)
def test_canary_rollout_needs_two_steps_and_a_one_step_edit_changes_nothing(kind, exports, tmp_path):
    with deployed(kind, exports, tmp_path) as running, running.client() as client:
        assert client.recommend([["sku-1"]], label="stable").item_ids.shape == (1, K)
        shutil.copytree(exports[1] / "2", running.base / "sasrec" / "2")
        # One edit that adds version 2 and points a label at it: refused as a whole (FAILED_PRECONDITION
        # in TF Serving's log), so version 2 never loads and the label does not exist. server_core.cc
        # ~512-514 runs UpdateModelVersionLabelMap before AddModelsViaModelConfigList; ~560-583 refuses
        # moving an existing label to a version that is not AVAILABLE even with the flag.
        running.rewrite([1, 2], {"stable": 2})
        time.sleep(1 if kind == "stand-in" else 3)  # several polls of the config file
        assert 2 not in _states(client)
        assert client.recommend([["sku-1"]], label="stable").item_ids.shape == (1, K)
        # Step 1: add the version, wait until it is AVAILABLE (labels unchanged: accepted, ~565-571).
        running.rewrite([1, 2], {"stable": 1})
        wait_for(lambda: _states(client).get(2) == "AVAILABLE")
        # Step 2: point the label at it (a new label, or one moved to an AVAILABLE version, ~574-586).
        running.rewrite([1, 2], {"stable": 1, "canary": 2})
        wait_for(lambda: _label_width(client, "canary") == CANARY_K)
        assert client.recommend([["sku-1"]], label="stable").item_ids.shape == (1, K)
        running.rewrite([1, 2], {"stable": 2, "canary": 2})
        wait_for(lambda: _label_width(client, "stable") == CANARY_K)


def _label_width(client: PredictionClient, label: str) -> int | None:
    try:
        return client.recommend([["sku-1"]], label=label).item_ids.shape[1]
    except ServingError:
        return None


# ------------------------------------------------------------------------------------ batching
def test_concurrent_histories_of_different_lengths_are_merged_and_answered_correctly(deployment, exports):
    # batching_session.cc ~500-545: with pad_variable_length_inputs merged tensors are padded at the end
    # with each task's first element; the clients start histories with "", so answers are unchanged.
    trained = exports[0]
    requests = [sample_histories(trained, count=1 + i % 3, seed=300 + i) for i in range(16)]
    answers = recommend_concurrently(deployment.client, requests, 4)
    assert len(answers) == len(requests)
    for index, histories in enumerate(requests):
        check_top_k(trained, histories, answers[index].item_ids, answers[index].scores)


def test_requests_over_max_batch_size_fail_and_the_clients_split_them(deployment, exports):
    trained = exports[0]
    limit = read_batching_parameters(BATCHING)["max_batch_size"]
    histories = sample_histories(trained, count=limit + 1, seed=81)
    with deployment.client(max_batch_size=None) as whole:
        error = error_of(lambda: whole.recommend(histories))
    # tensorflow/core/kernels/batching_util/shared_batch_scheduler.h Schedule: the size check comes first.
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert f"Task size {limit + 1} is larger than maximum input batch size {limit}" in error.details
    with deployment.client() as split:  # the default max_batch_size is the shipped file's
        top = split.recommend(histories)
    check_top_k(trained, histories, top.item_ids, top.scores)
    rest = RestClient(deployment.rest_url, "sasrec", timeout=30)
    check_top_k(trained, histories, *rest.recommend(histories))


# ------------------------------------------------------------------------------------ status codes
def test_status_codes_follow_tf_serving(deployment):
    with deployment.client() as client:
        # core/basic_manager.cc ~139: NotFound "Servable not found for request".
        assert error_of(lambda: client.recommend([["a"]], version=99)).code == grpc.StatusCode.NOT_FOUND
        # model_servers/server_core.cc ~891: InvalidArgument "Unrecognized servable version label".
        assert error_of(lambda: client.recommend([["a"]], label="beta")).code == grpc.StatusCode.INVALID_ARGUMENT
        # servables/tensorflow/predict_util.cc ~89-91: FailedPrecondition "Serving signature key ... not found".
        error = error_of(lambda: client.predict({"history": history_tensor([["a"]])}, "no_such_signature"))
        assert error.code == grpc.StatusCode.FAILED_PRECONDITION
        error = error_of(lambda: client.predict({"history": np.array([[1, 2]], dtype=np.int64)}))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    with PredictionClient(deployment.address, "no_such_model", timeout=30) as other:
        assert error_of(lambda: other.recommend([["a"]])).code == grpc.StatusCode.NOT_FOUND
        # server_core.cc ~853-861: the label is resolved (GetModelVersionForLabel) before any servable lookup.
        error = error_of(lambda: other.recommend([["a"]], label="stable"))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT and "Unrecognized servable version label" in error.details
    rest = RestClient(deployment.rest_url, "sasrec", timeout=30)
    # http_rest_api_handler.cc ~164-171: the JSON is read against GetInfoMap's signature, an InvalidArgument.
    error = error_of(lambda: rest.predict({"history": history_tensor([["a"]])}, "no_such_signature"))
    assert (error.code, error.http_status) == (grpc.StatusCode.INVALID_ARGUMENT, 400)


@pytest.mark.parametrize("method, path, status", [
    # http_rest_api_handler.cc ~74-75: anything not dispatched is InvalidArgument "Malformed request" (400).
    ("POST", "/v1/models/sasrec:nope", 400),
    ("GET", "/v1/modelz/sasrec", 400),
    ("POST", "/v1/models/sasrec/versions/x:predict", 400),
    # http_rest_api_util.cc ~31-32: the path regex is (?i); http_rest_api_handler.cc ~85-96 compares the
    # verb case-sensitively, so an upper-case verb is "Malformed request" (400), an upper-case path is not.
    ("POST", "/V1/MODELS/sasrec:predict", 200),
    ("POST", "/V1/MODELS/sasrec:PREDICT", 400),
])
def test_rest_paths_are_matched_like_tf_serving(deployment, method, path, status):
    body = json.dumps({"inputs": {"history": [["", "sku-1"]]}}).encode() if method == "POST" else None
    request = urllib.request.Request(deployment.rest_url + path, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            got = response.status
    except urllib.error.HTTPError as err:
        got = err.code
    assert got == status


def test_model_status_ignores_labels_reports_every_version_and_always_carries_a_status(deployment):
    # model_servers/get_model_status_impl.cc ~76-100: only name and version are read; NotFound "Could not
    # find version" / "Could not find any versions"; every row carries a status.
    with deployment.client() as client:
        assert client.status(label="stable") == client.status()  # the label plays no part
        assert error_of(lambda: client.status(version=99)).code == grpc.StatusCode.NOT_FOUND
    with urllib.request.urlopen(deployment.rest_url + "/v1/models/sasrec", timeout=30) as response:
        body = json.loads(response.read())
    assert body["model_version_status"][0]["status"] == {"error_code": "OK", "error_message": ""}


# ------------------------------------------------------------------------------------ request boundary
def _history_proto(dims, **content) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "sasrec"
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, **content)
    for size in dims:
        proto.tensor_shape.dim.add(size=size)
    request.inputs["history"].CopyFrom(proto)
    return request


@pytest.mark.parametrize("dims", [[-1, 2], [1, -3]])
def test_negative_dims_are_invalid_argument(deployment, dims):
    # tensorflow/core/framework/tensor.cc Tensor::FromProto refuses negative dims; TF Serving's
    # predict_util.cc answers InvalidArgument "tensor parsing error".
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(deployment.address))
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(_history_proto(dims, string_val=[b"", b"sku-1"]), timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_the_stand_in_refuses_a_short_value_list_that_tensorflow_would_fill_by_repetition(deployment):
    """Stand-in only: TensorFlow's Tensor::FromProto repeats a short typed value list's last value,
    so TF Serving answers [3, 2] with two values as three rows; the stand-in refuses it (issue 15)."""
    if deployment.kind != "stand-in":
        pytest.skip("deliberately stricter than TF Serving")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(deployment.address))
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(_history_proto([3, 2], string_val=[b"", b"sku-1"]), timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "declares 6 values but the tensor holds 2" in info.value.details()
    assert tf.make_ndarray(_history_proto([3, 2], string_val=[b"", b"x"]).inputs["history"]).shape == (3, 2)


# ------------------------------------------------------------------------------------ the command line
def test_the_suite_starts_tensorflow_model_server_with_the_flags_compose_and_k8s_ship():
    compose, k8s = shipped_flags(COMPOSE), shipped_flags(K8S)
    paths = {"model_config_file", "batching_parameters_file", "monitoring_config_file"}
    assert compose.keys() == k8s.keys() and {k: v for k, v in compose.items() if k not in paths} == \
        {k: v for k, v in k8s.items() if k not in paths}
    assert compose["allow_version_labels_for_unavailable_models"] == "true"  # models.config has labels
    command = server_command(Path("/c"), 1, 2)
    assert [arg.split("=")[0][2:] for arg in command[1:]] == list(compose)  # the same flags, in order


@pytest.mark.parametrize("kind", KINDS)
def test_the_shipped_models_config_does_not_start_without_the_labels_flag(kind, exports, tmp_path):
    """server_core.cc ~514, ~576-583 (labels before any load) → main.cc ~342-345 "Failed to start server"."""
    shutil.copytree(exports[1] / "1", tmp_path / "base" / "sasrec" / "1")
    config = tmp_path / "models.config"
    config.write_text(_config_text(tmp_path / "base"), encoding="utf-8")
    if kind == "stand-in":
        with pytest.raises(ValueError, match="Failed to start server"):
            stand_in(config, allow_version_labels_for_unavailable_models=None).start()
        return
    grpc_port, rest_port = free_ports(2)
    result = subprocess.run(server_command(config, grpc_port, rest_port,
                                           allow_version_labels_for_unavailable_models=None),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "Failed to start server" in result.stdout + result.stderr


def test_grpc_outputs_come_in_typed_value_fields(deployment):
    """predict_util.cc ~174-187: Tensor::AsProtoField, tensor_content only with
    --enable_serialization_as_tensor_content (not shipped)."""
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(deployment.address))
    reply = stub.Predict(_history_proto([1, 2], string_val=[b"", b"sku-1"]), timeout=30)
    scores, ids = reply.outputs["scores"], reply.outputs["item_ids"]
    assert len(scores.float_val) == K and not scores.tensor_content and len(ids.string_val) == K


def test_rest_output_filter_is_ignored(deployment):
    """util/json_tensor.cc ~490-520: FillPredictRequestFromJson reads no output_filter."""
    body = json.dumps({"output_filter": ["scores"], "inputs": {"history": [["", "sku-1"]]}}).encode()
    request = urllib.request.Request(deployment.rest_url + "/v1/models/sasrec:predict", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert "item_ids" in json.loads(response.read())["outputs"]
