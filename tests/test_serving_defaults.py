"""One source for the serving defaults and the export contract: the server, the manager, the
batcher, the clients and ``sasrec-tf serve`` read ``sasrec_tf.serving.options.DEFAULTS``; the
contract imports without TensorFlow."""

import dataclasses
import inspect
import subprocess
import sys
from pathlib import Path

import numpy as np

from sasrec_tf.cli import build_parser
from sasrec_tf.export import UNKNOWN_SCORE, export_saved_model
from sasrec_tf.export.contract import DEFAULT_K
from sasrec_tf.serving.batching import Batcher
from sasrec_tf.serving.client import DEFAULT_MAX_BATCH_SIZE, PredictionClient, RestClient
from sasrec_tf.serving.manager import ModelManager
from sasrec_tf.serving.options import DEFAULTS, REST_PORT
from sasrec_tf.serving.server import LocalModelServer

ROOT = Path(__file__).resolve().parents[1]


def defaults(function):
    return {name: p.default for name, p in inspect.signature(function).parameters.items()
            if p.default is not inspect.Parameter.empty}


def test_the_server_manager_and_batcher_take_every_default_from_the_serving_options():
    options = dataclasses.asdict(DEFAULTS)
    server = defaults(LocalModelServer.__init__)
    assert {name: server[name] for name in options if name in server} == {
        name: value for name, value in options.items() if name in server}
    assert set(options) - set(server) == {"model_name", "timeout"}  # the clients'
    manager = defaults(ModelManager.__init__)
    for name in ("load_retries", "load_retry_seconds", "allow_version_labels_for_unavailable_models"):
        assert manager[name] == options[name]
    batcher = defaults(Batcher.__init__)
    assert (batcher["max_batch_size"], batcher["num_batch_threads"]) == (DEFAULTS.max_batch_size,
                                                                         DEFAULTS.num_batch_threads)


def test_the_clients_expect_the_server_the_options_describe():
    grpc_client, rest_client = defaults(PredictionClient.__init__), defaults(RestClient.__init__)
    assert grpc_client["target"] == f"{DEFAULTS.host}:{DEFAULTS.port}"
    assert rest_client["base_url"] == f"http://{DEFAULTS.host}:{REST_PORT}"
    for client in (grpc_client, rest_client):
        assert client["model"] == DEFAULTS.model_name and client["timeout"] == DEFAULTS.timeout
        assert client["max_batch_size"] == DEFAULT_MAX_BATCH_SIZE == DEFAULTS.max_batch_size
    assert grpc_client["max_message_bytes"] == DEFAULTS.max_message_bytes


def _subcommand(name):
    action = next(a for a in build_parser()._actions if a.dest == "command")
    return action.choices[name]


def test_sasrec_tf_serve_and_export_take_their_defaults_from_the_library():
    serve = _subcommand("serve").parse_args(["--model-base", "."])
    flags = {"host": "host", "port": "port", "rest_port": "rest_port", "poll_seconds": "poll_seconds",
             "workers": "max_workers", "max_request_elements": "max_request_elements",
             "rest_read_timeout": "rest_read_timeout", "load_retries": "load_retries",
             "load_retry_seconds": "load_retry_seconds", "enable_batching": "enable_batching",
             "max_batch_size": "max_batch_size", "num_batch_threads": "num_batch_threads",
             "allow_unavailable_labels": "allow_version_labels_for_unavailable_models"}
    for dest, field in flags.items():
        assert getattr(serve, dest) == getattr(DEFAULTS, field), dest
    export = _subcommand("export").parse_args(["--model", "m", "--export-base", "b"])
    assert export.k == defaults(export_saved_model)["k"] == DEFAULT_K and export.name == DEFAULTS.model_name
    recommend = _subcommand("recommend").parse_args(["--model", "m", "--data", "d", "--format", "csv", "--out", "o"])
    assert recommend.k == DEFAULT_K and recommend.batch_size is None  # None: recommend_to_file's default


def test_the_unknown_score_is_the_lowest_float32_and_the_contract_imports_no_tensorflow():
    assert UNKNOWN_SCORE == float(np.finfo(np.float32).min) and type(UNKNOWN_SCORE) is float
    program = ("import sys; import sasrec_tf.export, sasrec_tf.export.contract, sasrec_tf.serving.options, "
               "sasrec_tf.serving.limits; sasrec_tf.export.describe_signatures(); "
               "print('tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.stdout.strip() == "False", result.stderr[-2000:]
