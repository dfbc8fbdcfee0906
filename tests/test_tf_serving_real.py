"""The client contract against the stand-in and a real ``tensorflow_model_server`` (skipped when none).

Every case runs against ``LocalModelServer`` (``sasrec-tf serve --model-base``) and, when
available, against TF Serving — when either

* ``tensorflow_model_server`` is on PATH (or ``SASREC_TF_SERVING_BINARY`` names it): the module
  exports a small model, starts the binary on free loopback ports with the export as
  ``--model_base_path``, and compares its answers with the in-process model; or
* ``SASREC_TF_SERVING_ADDRESS=host:port`` names a running server's gRPC endpoint. It must serve
  ``SASREC_TF_SERVING_MODEL`` (default ``sasrec``); ``SASREC_TF_SERVING_EXPORT`` may point to the
  version directory it serves, so the answers are compared with that SavedModel loaded here
  (without it only the contract is checked); ``SASREC_TF_SERVING_REST=http://host:8501`` adds
  the REST checks.

The stand-in gives the same status codes (FAILED_PRECONDITION for an unknown signature over
gRPC, as TF Serving); ``test_serving_conformance.py`` holds the cases that need the shipped
deployment files.
"""

import os
import shutil
import subprocess
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf

from sasrec_tf.export import SIGNATURES, export_saved_model
from sasrec_tf.serving import PredictionClient, RestClient, ServingError
from sasrec_tf.serving.client import history_tensor
from sasrec_tf.testing import free_ports
from test_export import K, check_top_k, make_trained, sample_histories

BINARY = os.environ.get("SASREC_TF_SERVING_BINARY") or shutil.which("tensorflow_model_server")
ADDRESS = os.environ.get("SASREC_TF_SERVING_ADDRESS")

REAL = pytest.param("tensorflow_model_server", marks=pytest.mark.skipif(
    not (BINARY or ADDRESS),
    reason="no TensorFlow Serving: put tensorflow_model_server on PATH or set SASREC_TF_SERVING_ADDRESS",
))


@pytest.fixture(scope="module", params=["stand-in", REAL])
def target(request, tmp_path_factory):
    """``(grpc address, rest url or None, model name, expected(histories) -> (ids, scores) or None, trained)``."""
    if request.param == "stand-in":
        from sasrec_tf.serving import LocalModelServer

        trained = make_trained(seed=2)
        base = tmp_path_factory.mktemp("stand_in_serving")
        export_saved_model(trained, base, "sasrec", k=K)
        with LocalModelServer(base, port=0, rest_port=0, poll_seconds=0) as server:
            yield server.address, f"http://127.0.0.1:{server.rest_port}", "sasrec", None, trained
        return
    if ADDRESS:
        export = os.environ.get("SASREC_TF_SERVING_EXPORT")
        expected = None
        if export:
            loaded = tf.saved_model.load(export)

            def expected(histories):
                out = loaded.signatures["serving_default"](history=tf.constant(history_tensor(histories)))
                return [[x.decode() for x in row] for row in out["item_ids"].numpy()], out["scores"].numpy()
        yield ADDRESS, os.environ.get("SASREC_TF_SERVING_REST"), os.environ.get("SASREC_TF_SERVING_MODEL", "sasrec"), \
            expected, None
        return
    trained = make_trained(seed=2)
    base = tmp_path_factory.mktemp("real_serving")
    export_saved_model(trained, base, "sasrec", k=K)
    grpc_port, rest_port = free_ports(2)
    log = open(base / "server.log", "w")
    process = subprocess.Popen([BINARY, f"--port={grpc_port}", f"--rest_api_port={rest_port}", "--model_name=sasrec",
                                f"--model_base_path={base / 'sasrec'}", "--enable_model_warmup=true",
                                "--file_system_poll_wait_seconds=1"], stdout=log, stderr=subprocess.STDOUT)
    address = f"127.0.0.1:{grpc_port}"
    try:
        with PredictionClient(address, "sasrec", timeout=5) as client:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if client.status()[0]["state"] == "AVAILABLE":
                        break
                except ServingError:
                    pass
                assert process.poll() is None, (base / "server.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "tensorflow_model_server did not load the export"
                time.sleep(0.5)
        yield address, f"http://127.0.0.1:{rest_port}", "sasrec", None, trained
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="module")
def client(target):
    with PredictionClient(target[0], target[2], timeout=30) as client:
        yield client


def test_real_server_top_k_matches_the_model(target, client):
    _, _, _, expected, trained = target
    histories = [["sku-1", "sku-2", "nope"], [], ["sku-5"] * 3]
    if trained is None and expected is None:
        histories = [["a", "b"], []]
    top = client.recommend(histories)
    assert top.item_ids.shape[0] == len(histories) and top.scores.dtype == np.float32
    if trained is not None:
        check_top_k(trained, histories, top.item_ids, top.scores)
        more = sample_histories(trained, count=8, seed=51)
        again = client.recommend(more)
        check_top_k(trained, more, again.item_ids, again.scores)
    elif expected is not None:
        ids, scores = expected(histories)
        np.testing.assert_array_equal(top.item_ids, np.array(ids, dtype=object))
        np.testing.assert_allclose(top.scores, scores, rtol=1e-5)


def test_real_server_metadata_status_and_every_signature(client):
    version, signatures = client.metadata()
    assert set(SIGNATURES) <= set(signatures)
    assert client.status()[0]["state"] == "AVAILABLE"
    histories = [["sku-1"], []]
    assert client.embed(histories).shape[0] == 2
    assert [len(s) for s in client.score(histories, [["sku-2", "nope"], ["sku-3"]])] == [2, 1]
    assert client.recommend(histories, exclude_history=False).item_ids.shape[0] == 2
    assert client.item_embeddings(["sku-1", "nope"])[1].tolist() == [True, False]


def test_real_server_status_codes(client, target):
    with pytest.raises(ServingError) as info:
        client.predict({"history": np.array([[1, 2]], dtype=np.int64)})
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(ServingError) as info:
        client.predict({"history": history_tensor([["a"]])}, "no_such_signature")
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(ServingError) as info:
        client.recommend([["a"]], version=987654)
    assert info.value.code == grpc.StatusCode.NOT_FOUND
    with PredictionClient(target[0], "no_such_model", timeout=30) as other, pytest.raises(ServingError) as info:
        other.recommend([["a"]])
    assert info.value.code == grpc.StatusCode.NOT_FOUND


def test_real_server_rest_api(target, client):
    if not target[1]:
        pytest.skip("no REST address (SASREC_TF_SERVING_REST)")
    rest = RestClient(target[1], target[2], timeout=30)
    histories = [["sku-1", "sku-2"], ["sku-3"]]
    via_rest = rest.recommend(histories)
    via_grpc = client.recommend(histories)
    np.testing.assert_array_equal(via_rest.item_ids, via_grpc.item_ids)
    np.testing.assert_allclose(via_rest.scores, via_grpc.scores, rtol=1e-6)
    rows = rest.predict({"history": history_tensor(histories)}, fmt="instances")
    np.testing.assert_array_equal(rows["item_ids"], via_grpc.item_ids)
