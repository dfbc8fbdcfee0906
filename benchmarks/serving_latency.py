"""Latency and throughput of the exported ``serving_default`` (top-k, history excluded).

For each catalogue size, builds a SASRec with the paper's architecture (``max_len`` 50, d 50,
2 blocks, 1 head; random weights: speed does not depend on training), exports it with
``sasrec_tf.export``, and measures:

* ``in-process``: the loaded SavedModel's ``serving_default`` called directly
  (``tf.saved_model.load(...).signatures["serving_default"]``), one caller;
* ``local-server``: ``sasrec-tf serve`` in a subprocess, ``C`` client threads each with its own
  gRPC channel sending Predict requests built once up front (so the numbers are the server's and
  the transport's, not the client's proto building).

Histories are full (``max_len`` known items, plus the leading ``""`` the client sends). Reports
p50 / p99 latency per request and throughput (requests/s and histories/s) as a table and JSON.

    python benchmarks/serving_latency.py --items 25000 --batch 1 64 --clients 1 8
    python benchmarks/serving_latency.py --items 25000 100000 1000000 --modes in-process
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from sasrec_tf.testing.bench import set_tensorflow_environment

set_tensorflow_environment()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from sasrec_tf import SASRec, SASRecConfig  # noqa: E402
from sasrec_tf._compat import keras  # noqa: E402
from sasrec_tf.artifacts import TrainedModel  # noqa: E402
from sasrec_tf.data.vocab import ItemVocabulary  # noqa: E402
from sasrec_tf.export import export_saved_model  # noqa: E402


def build_export(num_items: int, base: Path, max_len: int, hidden_units: int, seed: int = 0) -> Path:
    keras.utils.set_random_seed(seed)
    config = SASRecConfig(max_len=max_len, hidden_units=hidden_units, num_blocks=2, num_heads=1, dropout_rate=0.0)
    model = SASRec(config, num_items=num_items).build_weights()
    vocab = ItemVocabulary([f"item{i}" for i in range(num_items)])
    counts = np.concatenate([[0], np.random.default_rng(seed).zipf(1.3, num_items).clip(max=10**6)])
    return export_saved_model(TrainedModel(model, vocab, item_counts=counts), base, "sasrec", k=10)


def histories(num_items: int, batch: int, max_len: int, rng: np.random.Generator) -> np.ndarray:
    ids = rng.integers(0, num_items, size=(batch, max_len))
    out = np.empty((batch, max_len + 1), dtype=object)
    out[:, 0] = b""
    out[:, 1:] = np.vectorize(lambda i: f"item{i}".encode())(ids)
    return out


def summarize(latencies: list[float], wall: float, batch: int) -> dict[str, float]:
    ms = np.asarray(latencies) * 1e3
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "requests_per_s": round(len(ms) / wall, 1), "histories_per_s": round(len(ms) * batch / wall, 1),
            "requests": len(ms)}


def bench_in_process(version_dir: Path, num_items: int, batch: int, requests: int, max_len: int) -> dict:
    loaded = tf.saved_model.load(str(version_dir))
    fn = loaded.signatures["serving_default"]
    rng = np.random.default_rng(1)
    inputs = [tf.constant(histories(num_items, batch, max_len, rng)) for _ in range(16)]
    for x in inputs:
        fn(history=x)
    latencies = []
    start = time.perf_counter()
    for i in range(requests):
        t0 = time.perf_counter()
        fn(history=inputs[i % len(inputs)])["item_ids"].numpy()
        latencies.append(time.perf_counter() - t0)
    return summarize(latencies, time.perf_counter() - start, batch)


class LocalServer:
    """``sasrec-tf serve`` on a free loopback port, in a subprocess."""

    def __init__(self, base: Path, workers: int, intra_op_threads: int = 0, batching: bool = False):
        cmd = [sys.executable, "-m", "sasrec_tf.cli", "serve", "--model-base", str(base), "--port", "0",
               "--poll-seconds", "0", "--workers", str(workers), "--intra-op-threads", str(intra_op_threads)]
        if batching:
            cmd.append("--enable-batching")
        self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        if " on " not in line:
            self.process.kill()
            raise RuntimeError(f"server did not start: {line}{self.process.stderr.read()}")
        self.address = line.split(" on ", 1)[1].split(" ", 1)[0]

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()


def bench_server(address: str, num_items: int, batch: int, clients: int, requests: int, max_len: int) -> dict:
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    rng = np.random.default_rng(2)
    prepared = []
    for _ in range(16):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "sasrec"
        request.inputs["history"].CopyFrom(tf.make_tensor_proto(histories(num_items, batch, max_len, rng)))
        prepared.append(request)
    per_client = max(1, requests // clients)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(clients + 1)

    def client(index: int) -> None:
        channel = grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            for request in prepared[:4]:  # warm this connection
                stub.Predict(request, timeout=30)
            barrier.wait()
            for i in range(per_client):
                t0 = time.perf_counter()
                stub.Predict(prepared[(i + index) % len(prepared)], timeout=30)
                latencies[index].append(time.perf_counter() - t0)
        except BaseException as err:  # noqa: BLE001
            errors.append(err)
            barrier.abort()
        finally:
            channel.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    if errors:
        raise errors[0]
    return summarize([x for chunk in latencies for x in chunk], wall, batch)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, nargs="+", default=[25_000], help="catalogue sizes (25k, 100k, 1M)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--modes", nargs="+", choices=("in-process", "local-server", "local-server-batching"),
                        default=["in-process", "local-server", "local-server-batching"],
                        help="local-server-batching: `sasrec-tf serve --enable-batching`")
    parser.add_argument("--requests", type=int, default=400, help="requests per measurement (batch 1)")
    parser.add_argument("--max-len", type=int, default=50)
    parser.add_argument("--hidden-units", type=int, default=50)
    parser.add_argument("--workers", type=int, default=8, help="server request threads")
    parser.add_argument("--intra-op-threads", type=int, default=0,
                        help="server's TensorFlow intra-op threads (0: default)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    results = []
    print(f"{'items':>9} {'mode':>21} {'batch':>5} {'clients':>7} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'req/s':>8} {'hist/s':>9}", flush=True)
    for num_items in args.items:
        with tempfile.TemporaryDirectory() as tmp:
            version_dir = build_export(num_items, Path(tmp), args.max_len, args.hidden_units)
            for mode in args.modes:
                server = None
                if mode.startswith("local-server"):
                    server = LocalServer(Path(tmp), args.workers, args.intra_op_threads, mode.endswith("batching"))
                try:
                    for batch in args.batch:
                        requests = max(50, args.requests // max(1, batch // 8))
                        for clients in (args.clients if server else [1]):
                            if server:
                                row = bench_server(server.address, num_items, batch, clients, requests, args.max_len)
                            else:
                                row = bench_in_process(version_dir, num_items, batch, requests, args.max_len)
                            row = {"items": num_items, "mode": mode, "batch": batch, "clients": clients, **row}
                            results.append(row)
                            print(f"{num_items:>9} {mode:>21} {batch:>5} {clients:>7} {row['p50_ms']:>8.2f} "
                                  f"{row['p99_ms']:>8.2f} {row['requests_per_s']:>8.1f} "
                                  f"{row['histories_per_s']:>9.1f}", flush=True)
                finally:
                    if server:
                        server.close()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
