"""``sasrec-tf serve``: a local stand-in for tensorflow_model_server (TF Serving's gRPC and REST APIs)."""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading

from sasrec_tf.cli.common import UsageError
from sasrec_tf.serving.options import DEFAULTS, REST_PORT


def register(subcommands) -> None:
    parser = subcommands.add_parser(
        "serve", help="serve exports over TF Serving's gRPC API (local development server)",
        description="Serve every model under --model-base (its latest version, as tensorflow_model_server's "
                    "--model_base_path) or those of --model-config-file (their version policies and labels) "
                    "over TF Serving's PredictionService/ModelService. Starts as tensorflow_model_server does: the "
                    "ports open once every model's newest version is AVAILABLE (a model without versions is "
                    "waited for; one that fails to load stops the start, exit 2). New versions are picked up "
                    "without restart. For production use tensorflow_model_server (see serving/README.md).")
    parser.add_argument("--model-base", dest="model_base", help="export base: BASE/NAME/<version>/")
    parser.add_argument("--model-config-file", dest="model_config_file",
                        help="TF Serving models.config (version policy, labels); with --model-base, base "
                             "paths become MODEL_BASE/NAME")
    parser.add_argument("--allow-version-labels-for-unavailable-models", dest="allow_unavailable_labels",
                        action="store_true",
                        help="as TF Serving's flag, which any version_labels need to start (labels are assigned "
                             "before anything loads): a new or unchanged label may name a version that is not "
                             "loaded (moving an existing label there is still refused)")
    parser.add_argument("--max-num-load-retries", dest="load_retries", type=int, default=DEFAULTS.load_retries,
                        help=f"retries of a failed version load (TF Serving's default {DEFAULTS.load_retries})")
    parser.add_argument("--load-retry-interval-seconds", dest="load_retry_seconds", type=float,
                        default=DEFAULTS.load_retry_seconds,
                        help=f"seconds between load retries (TF Serving's default {DEFAULTS.load_retry_seconds:g})")
    parser.add_argument("--host", default=DEFAULTS.host, help="interface (default: loopback only)")
    parser.add_argument("--port", type=int, default=DEFAULTS.port,
                        help=f"gRPC port (0: any free port; default {DEFAULTS.port})")
    parser.add_argument("--rest-port", dest="rest_port", type=int, default=DEFAULTS.rest_port,
                        help=f"also serve TF Serving's REST API on this port (e.g. {REST_PORT}; 0: any free port)")
    parser.add_argument("--rest-read-timeout", dest="rest_read_timeout", type=float,
                        default=DEFAULTS.rest_read_timeout,
                        help="seconds a REST client may take to send its request "
                             f"(default {DEFAULTS.rest_read_timeout:g})")
    parser.add_argument("--max-request-elements", dest="max_request_elements", type=int,
                        default=DEFAULTS.max_request_elements,
                        help="most string ids one Predict may carry, all inputs together (rows x width); "
                             f"larger requests are INVALID_ARGUMENT (default {DEFAULTS.max_request_elements:,})")
    parser.add_argument("--max-request-cells", dest="max_request_cells", type=int,
                        default=DEFAULTS.max_request_cells,
                        help="most float32 values one Predict may compute in its largest intermediate (rows x "
                             "(catalogue + 1) for serving_default); larger requests are INVALID_ARGUMENT before "
                             f"anything runs (default {DEFAULTS.max_request_cells:,})")
    parser.add_argument("--rest-max-connections", dest="rest_max_connections", type=int,
                        default=DEFAULTS.rest_max_connections,
                        help="REST connections served at once; more are answered 503 and closed "
                             f"(default {DEFAULTS.rest_max_connections})")
    parser.add_argument("--poll-seconds", dest="poll_seconds", type=float, default=DEFAULTS.poll_seconds,
                        help=f"how often to look for new versions (default {DEFAULTS.poll_seconds:g})")
    parser.add_argument("--workers", type=int, default=DEFAULTS.max_workers,
                        help=f"request threads (default {DEFAULTS.max_workers})")
    parser.add_argument("--enable-batching", dest="enable_batching", action="store_true",
                        help="merge concurrent requests to one signature into batches (as TF Serving's "
                             "--enable_batching; histories are padded with each request's first element)")
    parser.add_argument("--batching-parameters-file", dest="batching_parameters_file",
                        help="TF Serving's batching_parameters.txt: its max_batch_size and num_batch_threads "
                             "(with --enable-batching)")
    parser.add_argument("--max-batch-size", dest="max_batch_size", type=int, default=DEFAULTS.max_batch_size,
                        help="with batching, the most rows one request may have (larger: INVALID_ARGUMENT, as "
                             f"TF Serving) and the largest merged batch (default {DEFAULTS.max_batch_size})")
    parser.add_argument("--num-batch-threads", dest="num_batch_threads", type=int,
                        default=DEFAULTS.num_batch_threads,
                        help=f"with batching, threads running batches (default {DEFAULTS.num_batch_threads})")
    parser.add_argument("--max-enqueued-batches", dest="max_enqueued_batches", type=int,
                        default=DEFAULTS.max_enqueued_batches,
                        help="with batching, the most batches waiting per signature; more requests are "
                             f"UNAVAILABLE (TF Serving's default {DEFAULTS.max_enqueued_batches})")
    parser.add_argument("--intra-op-threads", dest="intra_op_threads", type=int, default=0,
                        help="threads one TensorFlow op may use (0: TensorFlow's default, all cores); 1 "
                             "often lowers tail latency with many concurrent small requests")
    parser.set_defaults(func=run)


def check_settings(args: argparse.Namespace) -> None:
    """Refuse settings no server can run with, naming the flag (before TensorFlow is imported)."""
    if not args.model_base and not args.model_config_file:
        raise UsageError("give --model-base, --model-config-file, or both")
    for flag, port in (("--port", args.port), ("--rest-port", args.rest_port)):
        if port is not None and not 0 <= port <= 65535:
            raise UsageError(f"{flag} must be a TCP port, 1-65535 (or 0 for any free port), got {port}")
    at_least = [("--max-batch-size", args.max_batch_size, 1), ("--num-batch-threads", args.num_batch_threads, 1),
                ("--workers", args.workers, 1), ("--max-request-elements", args.max_request_elements, 1),
                ("--max-request-cells", args.max_request_cells, 1),
                ("--rest-max-connections", args.rest_max_connections, 1),
                ("--max-enqueued-batches", args.max_enqueued_batches, 1),
                ("--intra-op-threads", args.intra_op_threads, 0), ("--max-num-load-retries", args.load_retries, 0)]
    for flag, value, least in at_least:
        if value < least:
            raise UsageError(f"{flag} must be at least {least}, got {value}")
    if not (math.isfinite(args.poll_seconds) and args.poll_seconds >= 0):
        raise UsageError(f"--poll-seconds must be a number of seconds >= 0 (0: never poll), got {args.poll_seconds}")
    if args.batching_parameters_file and not args.enable_batching:
        raise UsageError("--batching-parameters-file needs --enable-batching (as in tensorflow_model_server)")
    if not (math.isfinite(args.load_retry_seconds) and args.load_retry_seconds >= 0):
        raise UsageError(f"--load-retry-interval-seconds must be a number of seconds >= 0, "
                         f"got {args.load_retry_seconds}")
    if not (math.isfinite(args.rest_read_timeout) and args.rest_read_timeout > 0):
        raise UsageError(f"--rest-read-timeout must be a number of seconds > 0, got {args.rest_read_timeout}")


def run(args: argparse.Namespace) -> int:
    check_settings(args)
    import tensorflow as tf

    from sasrec_tf.serving.server import LocalModelServer

    if args.intra_op_threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.intra_op_threads)

    pad = {}
    if args.batching_parameters_file:  # its values win over the flags, as the file is TF Serving's
        from sasrec_tf.serving.batching import read_batching_parameters

        for name, value in read_batching_parameters(args.batching_parameters_file).items():
            setattr(args, name, value)
        pad = {"pad_variable_length_inputs": args.pad_variable_length_inputs}
    server = LocalModelServer(args.model_base, model_config_file=args.model_config_file, host=args.host,
                              port=args.port, rest_port=args.rest_port, poll_seconds=args.poll_seconds,
                              max_workers=args.workers, max_request_elements=args.max_request_elements,
                              max_request_cells=args.max_request_cells,
                              rest_read_timeout=args.rest_read_timeout,
                              rest_max_connections=args.rest_max_connections,
                              allow_version_labels_for_unavailable_models=args.allow_unavailable_labels,
                              load_retries=args.load_retries, load_retry_seconds=args.load_retry_seconds,
                              enable_batching=args.enable_batching,
                              max_batch_size=args.max_batch_size, num_batch_threads=args.num_batch_threads,
                              max_enqueued_batches=args.max_enqueued_batches, **pad)
    server.start()  # OSError (port taken) and ValueError (bad config) become one-line errors
    models = ", ".join(server.manager.model_names()) or "none yet"
    rest = f"; REST on {args.host}:{server.rest_port}" if server.rest_port is not None else ""
    print(f"serving {models} on {server.address} (gRPC){rest}; Ctrl-C stops", flush=True)

    stopping = threading.Event()

    def stop(*_):
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=server.stop, daemon=True).start()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
    try:
        server.wait()
    except KeyboardInterrupt:
        server.stop()
    print("stopped", file=sys.stderr)
    return 0
