"""Multi-worker clusters of local processes, for tests and benchmarks.

:func:`run_local_cluster` starts one program as the workers of a ``MultiWorkerMirroredStrategy``
cluster on this machine, each with its own ``TF_CONFIG`` (:func:`sasrec_tf.distribute.tf_config`)
on free ports, and always cleans them up; :func:`run_parameter_server_cluster` does the same for
a chief, workers and ps tasks (``ParameterServerStrategy``) and can kill a task mid-run. Real
clusters are started by a scheduler (see the README).
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

__all__ = ["ClusterRun", "WorkerResult", "free_ports", "run_local_cluster", "run_parameter_server_cluster"]

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
    """One worker process of :func:`run_local_cluster`: exit code (None: killed at the deadline) and
    output; for a task that :func:`run_parameter_server_cluster` stopped, its peak RSS (MiB) then."""

    index: int
    returncode: int | None
    output: str
    peak_rss_mib: float | None = None


_PORT_ERRORS = ("Address already in use", "Failed to add port", "Could not start gRPC server")


def run_local_cluster(
    argv: Sequence[str],
    num_workers: int,
    *,
    timeout: float = 300.0,
    env: Mapping[str, str] | None = None,
    host: str = "127.0.0.1",
    attempts: int = 2,
    stop_on_failure: bool = True,
) -> list[WorkerResult]:
    """Run ``argv`` as ``num_workers`` processes of one multi-worker cluster on this machine.

    Each process gets its own ``TF_CONFIG`` (worker ``i`` of ``num_workers``, worker 0 the chief)
    on free ports of ``host``. All processes are waited for until ``timeout`` seconds in total; at
    the deadline, or as soon as one fails, the others are killed (their whole process groups), so
    nothing is left running. If a worker fails because its port was taken in the meantime, the
    cluster is started again on new ports (up to ``attempts`` times). With ``stop_on_failure=False``
    a failed worker does not stop the others: each is waited for until the deadline (to test that
    the others end by themselves). For tests and benchmarks;
    real clusters are started by a scheduler (see the README).
    """
    for attempt in range(1, attempts + 1):
        results = _run_cluster_once(argv, num_workers, timeout=timeout, env=env, host=host,
                                    stop_on_failure=stop_on_failure)
        port_clash = any(r.returncode not in (0, None) and any(e in r.output for e in _PORT_ERRORS) for r in results)
        if not port_clash or attempt == attempts:
            return results
        logger.warning("a worker's port was taken; starting the cluster again on new ports")
    return results  # pragma: no cover


def _run_cluster_once(argv, count, *, timeout, env, host, stop_on_failure=True) -> list[WorkerResult]:
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
            if all(code is not None for code in codes) or (stop_on_failure and
                                                           any(code not in (None, 0) for code in codes)):
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


@dataclass
class ClusterRun:
    """:func:`run_parameter_server_cluster`'s tasks: the chief's result, then each worker's and ps task's
    output (they serve until stopped), and which task was killed (``("worker", 1)``; None: none)."""

    chief: WorkerResult
    workers: list[WorkerResult]
    ps: list[WorkerResult]
    killed: tuple[str, int] | None = None


def run_parameter_server_cluster(
    argv: Sequence[str],
    num_workers: int = 2,
    num_ps: int = 2,
    *,
    timeout: float = 300.0,
    env: Mapping[str, str] | None = None,
    host: str = "127.0.0.1",
    kill: tuple[str, int] | None = None,
    kill_when: str | None = None,
) -> ClusterRun:
    """Run ``argv`` as every task of a parameter-server cluster on this machine: one chief,
    ``num_workers`` workers and ``num_ps`` ps tasks, each with its own ``TF_CONFIG``.

    The run ends when the chief exits (or at ``timeout`` seconds, when it is killed); then the
    workers and ps tasks, which serve until stopped, are stopped (their process groups). With
    ``kill`` (a task, e.g. ``("worker", 1)`` or ``("chief", 0)``) and ``kill_when``, that task is
    killed (SIGKILL) as soon as the chief's output contains ``kill_when``, as a machine that fails
    would be.
    """
    ports = free_ports(1 + num_workers + num_ps, host)
    addresses = [f"{host}:{port}" for port in ports]
    chief, workers, ps = addresses[0], addresses[1:1 + num_workers], addresses[1 + num_workers:]
    base_env = dict(os.environ if env is None else env)
    base_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    base_env["PYTHONUNBUFFERED"] = "1"  # the chief's output is read while it runs
    tasks = [("ps", i) for i in range(num_ps)] + [("worker", i) for i in range(num_workers)] + [("chief", 0)]
    processes: dict[tuple[str, int], subprocess.Popen] = {}
    logs: dict[tuple[str, int], object] = {}
    killed = None
    try:
        for task in tasks:
            logs[task] = tempfile.NamedTemporaryFile(mode="w+", encoding="utf-8", errors="replace")
            config = tf_config(workers, task[1], chief=chief, task_type=task[0], ps=ps)
            processes[task] = subprocess.Popen(list(argv), env={**base_env, "TF_CONFIG": config}, stdout=logs[task],
                                               stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        chief_process = processes[("chief", 0)]
        while time.monotonic() < deadline and chief_process.poll() is None:
            if kill is not None and killed is None and kill_when is not None:
                with open(logs[("chief", 0)].name, encoding="utf-8", errors="replace") as output:
                    if kill_when in output.read():
                        os.killpg(processes[tuple(kill)].pid, signal.SIGKILL)
                        killed = tuple(kill)
            time.sleep(0.2)
    finally:
        peaks = {task: _peak_rss_mib(process.pid) for task, process in processes.items() if process.poll() is None}
        for process in processes.values():
            if process.poll() is None:
                _kill_group(process)

    def result(task) -> WorkerResult:
        process, log = processes[task], logs[task]
        log.seek(0)
        output = log.read()
        log.close()
        return WorkerResult(task[1], process.returncode if process.returncode is not None and process.returncode >= 0
                            else None, output, peaks.get(task))

    chief_result = result(("chief", 0))
    return ClusterRun(chief=chief_result, workers=[result(("worker", i)) for i in range(num_workers)],
                      ps=[result(("ps", i)) for i in range(num_ps)], killed=killed)


def _peak_rss_mib(pid: int) -> float | None:
    """A running process' peak resident memory (``VmHWM`` in ``/proc``; Linux), MiB."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None
