"""Multi-worker clusters of local processes, for tests and benchmarks.

:func:`run_local_cluster` starts one program as the workers of a ``MultiWorkerMirroredStrategy``
cluster on this machine, each with its own ``TF_CONFIG`` (:func:`sasrec_tf.distribute.tf_config`)
on free ports, and always cleans them up. Real clusters are started by a scheduler (see the README).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import Mapping, Sequence

from sasrec_tf.distribute import tf_config

__all__ = ["WorkerResult", "free_ports", "run_local_cluster"]

logger = logging.getLogger(__name__)


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports that are free now (bound to port 0, then released).

    Another process may take one before it is used; :func:`run_local_cluster` retries then.
    """
    sockets, ports = [], []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, 0))
            sockets.append(sock)
            ports.append(sock.getsockname()[1])
    finally:
        for sock in sockets:
            sock.close()
    return ports


@dataclass
class WorkerResult:
    """One worker process of :func:`run_local_cluster`: exit code (None: killed at the deadline) and output."""

    index: int
    returncode: int | None
    output: str


_PORT_ERRORS = ("Address already in use", "Failed to add port", "Could not start gRPC server")


def run_local_cluster(
    argv: Sequence[str],
    num_workers: int,
    *,
    timeout: float = 300.0,
    env: Mapping[str, str] | None = None,
    host: str = "127.0.0.1",
    attempts: int = 2,
) -> list[WorkerResult]:
    """Run ``argv`` as ``num_workers`` processes of one multi-worker cluster on this machine.

    Each process gets its own ``TF_CONFIG`` (worker ``i`` of ``num_workers``, worker 0 the chief)
    on free ports of ``host``. All processes are waited for until ``timeout`` seconds in total; at
    the deadline, or as soon as one fails, the others are killed (their whole process groups), so
    nothing is left running. If a worker fails because its port was taken in the meantime, the
    cluster is started again on new ports (up to ``attempts`` times). For tests and benchmarks;
    real clusters are started by a scheduler (see the README).
    """
    for attempt in range(1, attempts + 1):
        results = _run_cluster_once(argv, num_workers, timeout=timeout, env=env, host=host)
        port_clash = any(r.returncode not in (0, None) and any(e in r.output for e in _PORT_ERRORS) for r in results)
        if not port_clash or attempt == attempts:
            return results
        logger.warning("a worker's port was taken; starting the cluster again on new ports")
    return results  # pragma: no cover


def _run_cluster_once(argv, count, *, timeout, env, host) -> list[WorkerResult]:
    addresses = [f"{host}:{port}" for port in free_ports(count, host)]
    base_env = dict(os.environ if env is None else env)
    base_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    processes, logs = [], []
    try:
        for index in range(count):
            log = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")
            logs.append(log)
            processes.append(
                subprocess.Popen(
                    list(argv),
                    env={**base_env, "TF_CONFIG": tf_config(addresses, index)},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: killed as a whole
                )
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            codes = [p.poll() for p in processes]
            if all(code is not None for code in codes) or any(code not in (None, 0) for code in codes):
                break
            time.sleep(0.2)
        if any(code not in (None, 0) for code in (p.poll() for p in processes)):
            time.sleep(1.0)  # let the others report the failure before they are stopped
    finally:
        for process in processes:
            if process.poll() is None:
                _kill_group(process)
    results = []
    for index, (process, log) in enumerate(zip(processes, logs)):
        log.seek(0)
        results.append(WorkerResult(index, process.returncode if process.returncode is not None and
                                    process.returncode >= 0 else None, log.read()))
        log.close()
    return results


def _kill_group(process: subprocess.Popen) -> None:
    """Stop a process started by :func:`run_local_cluster` and its children (its own group)."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
