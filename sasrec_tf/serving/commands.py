"""``sasrec-tf export`` and ``sasrec-tf serve`` (TensorFlow is imported only when they run)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading


def add_commands(commands) -> None:
    """Add the ``export`` and ``serve`` subcommands to the CLI's subparsers."""
    export = commands.add_parser(
        "export", help="export a trained model as a versioned SavedModel for TensorFlow Serving",
        description="Write EXPORT_BASE/NAME/<version>/ atomically: signatures serving_default (top-k "
                    "excluding the history), recommend_including_history, score, embed, item_embeddings; "
                    "the vocabulary inside; TF Serving warmup requests in assets.extra/.")
    export.add_argument("--model", required=True, help="model directory written by `sasrec-tf train`")
    export.add_argument("--export-base", dest="export_base", required=True,
                        help="directory that TF Serving (or `sasrec-tf serve`) watches")
    export.add_argument("--name", default="sasrec", help="model name clients use (default: sasrec)")
    export.add_argument("--version", type=int, help="version number (default: the next integer)")
    export.add_argument("--k", type=int, default=10, help="items returned per request (default: 10)")
    export.add_argument("--no-warmup", dest="warmup", action="store_false",
                        help="do not write assets.extra/tf_serving_warmup_requests")
    export.set_defaults(func=cmd_export)

    serve = commands.add_parser(
        "serve", help="serve exports over TF Serving's gRPC API (local development server)",
        description="Serve every model under --model-base (latest version; older ones on request) over "
                    "TF Serving's PredictionService/ModelService. New versions are picked up without "
                    "restart. For production use tensorflow_model_server (see serving/README.md).")
    serve.add_argument("--model-base", dest="model_base", help="export base: BASE/NAME/<version>/")
    serve.add_argument("--model-config-file", dest="model_config_file",
                       help="TF Serving models.config (version policy, labels); with --model-base, base "
                            "paths become MODEL_BASE/NAME")
    serve.add_argument("--host", default="127.0.0.1", help="interface (default: loopback only)")
    serve.add_argument("--port", type=int, default=8500, help="gRPC port (0: any free port; default 8500)")
    serve.add_argument("--rest-port", dest="rest_port", type=int,
                       help="also serve TF Serving's REST API on this port (e.g. 8501)")
    serve.add_argument("--poll-seconds", dest="poll_seconds", type=float, default=1.0,
                       help="how often to look for new versions (default 1)")
    serve.add_argument("--workers", type=int, default=8, help="request threads (default 8)")
    serve.add_argument("--enable-batching", dest="enable_batching", action="store_true",
                       help="merge concurrent requests to one signature into batches (as TF Serving's "
                            "--enable_batching; histories are padded with each request's first element)")
    serve.add_argument("--max-batch-size", dest="max_batch_size", type=int, default=64)
    serve.add_argument("--num-batch-threads", dest="num_batch_threads", type=int, default=1)
    serve.add_argument("--intra-op-threads", dest="intra_op_threads", type=int, default=0,
                       help="threads one TensorFlow op may use (0: TensorFlow's default, all cores); 1 "
                            "often lowers tail latency with many concurrent small requests")
    serve.set_defaults(func=cmd_serve)


def cmd_export(args: argparse.Namespace) -> int:
    from sasrec_tf.export import export_saved_model

    try:
        path = export_saved_model(args.model, args.export_base, args.name, version=args.version, k=args.k,
                                  warmup=args.warmup)
    except (ValueError, FileExistsError) as err:
        from sasrec_tf.cli import UsageError

        raise UsageError(str(err)) from None
    print(f"exported {args.name} version {path.name} to {path}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from sasrec_tf.cli import UsageError

    if not args.model_base and not args.model_config_file:
        raise UsageError("give --model-base, --model-config-file, or both")
    import tensorflow as tf

    from sasrec_tf.serving.server import LocalModelServer

    if args.intra_op_threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.intra_op_threads)

    server = LocalModelServer(args.model_base, model_config_file=args.model_config_file, host=args.host,
                              port=args.port, rest_port=args.rest_port, poll_seconds=args.poll_seconds,
                              max_workers=args.workers, enable_batching=args.enable_batching,
                              max_batch_size=args.max_batch_size, num_batch_threads=args.num_batch_threads)
    try:
        server.start()
    except (OSError, ValueError) as err:
        raise UsageError(str(err)) from None
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


def demo_export_and_recommend(model_dir, data, *, history_length: int = 10) -> None:
    """The end of ``sasrec-tf demo``: export the model, serve it locally, ask for one recommendation."""
    from pathlib import Path

    from sasrec_tf.export import export_saved_model
    from sasrec_tf.serving.client import PredictionClient
    from sasrec_tf.serving.server import LocalModelServer

    model_dir = Path(model_dir)
    export_base = model_dir / "export"
    path = export_saved_model(model_dir, export_base, "sasrec", k=10)
    print(f"\nexported the model for TensorFlow Serving: {path}")
    history = [str(item) for item in data.vocab.decode(data.sequences[0][-history_length:])]
    with LocalModelServer(export_base, port=0, poll_seconds=0) as server:
        with PredictionClient(server.address, "sasrec", timeout=30) as client:
            top = client.recommend([history])
    print(f"gRPC Predict via the local TF Serving-compatible server at {server.address} "
          f"(`sasrec-tf serve --model-base {export_base}`):")
    print(f"  history of user {data.user_ids[0]} (oldest first): {' '.join(history)}")
    print(f"  top-10 next items: {' '.join(top.item_ids[0])}")
