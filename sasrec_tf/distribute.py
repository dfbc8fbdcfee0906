"""Distributed training with TensorFlow's own engine: ``tf.distribute`` strategies by name.

Four strategies, picked by name (``sasrec-tf train --strategy NAME``):

* ``"default"`` -- no distribution: the one device TensorFlow picks (TensorFlow's default strategy).
* ``"mirrored"`` -- :class:`tf.distribute.MirroredStrategy`: synchronous data parallelism over the
  GPUs of this machine (the CPU when there is none). One process.
* ``"multi_worker"`` -- :class:`tf.distribute.MultiWorkerMirroredStrategy`: synchronous data
  parallelism over several processes (machines), each with its local GPUs, configured by the
  ``TF_CONFIG`` environment variable (see :func:`tf_config`). Create it at the very start of the
  program, before TensorFlow runs any operation; every worker runs the same program.
* ``"parameter_server"`` -- :class:`tf.distribute.experimental.ParameterServerStrategy`: the
  embedding tables sharded over the ``ps`` tasks of ``TF_CONFIG``, asynchronous steps on its
  ``worker`` tasks, driven by the ``chief`` (:mod:`sasrec_tf.parameter_server`).

Batch sizes. ``SASRecConfig.batch_size`` is the **global** batch: the sequences consumed by one
synchronous step across all replicas; each replica gets ``global / num_replicas_in_sync``. Use
:func:`global_batch_size` to convert a per-replica size instead. The learning rate is not scaled
automatically.

Files under multi-worker training. Only the chief (task ``chief``, or ``worker`` 0 when the cluster
has no chief) writes TensorBoard logs, backups and the final model to the real paths; Keras'
``TensorBoard`` and ``BackupAndRestore`` already write non-chief output to ``workertemp_<id>``
folders that they delete. Saving a model reads variables that are aggregated across workers, so
**every** worker must call ``save`` (the others into a temporary folder: :func:`writable_dir`), or
the chief waits forever for the others.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Mapping, Sequence

__all__ = [
    "STRATEGIES",
    "make_strategy",
    "is_chief",
    "worker_index",
    "num_workers",
    "global_batch_size",
    "per_replica_batch_size",
    "writable_dir",
    "tf_config",
    "read_tf_config",
    "agree",
]

logger = logging.getLogger(__name__)

STRATEGIES = ("default", "mirrored", "multi_worker", "parameter_server")


# ------------------------------------------------------------------------------------ TF_CONFIG
def tf_config(workers: Sequence[str], index: int, *, chief: str | None = None, task_type: str = "worker",
              ps: Sequence[str] | None = None) -> str:
    """The ``TF_CONFIG`` JSON for one task of a cluster of ``host:port`` addresses.

    With ``chief=None`` worker 0 is the chief (the usual set-up); with ``chief="host:port"`` the
    cluster has a separate ``chief`` task, which trains like a worker and also writes the files.
    With ``ps`` (parameter-server training) the cluster also has those ``ps`` tasks, and needs a chief.
    """
    cluster: dict[str, list[str]] = {"worker": list(workers)}
    if chief is not None:
        cluster["chief"] = [chief]
    if ps:
        if chief is None:
            raise ValueError("a cluster with ps tasks needs a chief")
        cluster["ps"] = list(ps)
    size = len(cluster.get(task_type, []))
    if not 0 <= index < size:
        raise ValueError(f"task index {index} out of range for {size} {task_type!r} task(s)")
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": int(index)}})


def read_tf_config(environ: Mapping[str, str] | None = None) -> dict | None:
    """Parse and check ``TF_CONFIG``; ``None`` when it is unset or empty.

    Raises:
        ValueError: invalid JSON, no ``cluster``/``task``, or a task that is not in the cluster,
            with a message that says which.
    """
    text = (os.environ if environ is None else environ).get("TF_CONFIG", "").strip()
    if not text:
        return None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"TF_CONFIG is not valid JSON ({err.msg} at column {err.colno}): {text[:200]!r}") from None
    cluster, task = config.get("cluster"), config.get("task")
    if not isinstance(cluster, dict) or not cluster:
        raise ValueError(f"TF_CONFIG needs a 'cluster' mapping of task types to addresses, got {cluster!r}")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ValueError(f"TF_CONFIG needs a 'task' with 'type' and 'index', got {task!r}")
    members = cluster.get(task["type"])
    if not isinstance(members, list) or not 0 <= int(task["index"]) < len(members):
        raise ValueError(f"TF_CONFIG task {task} is not in the cluster {cluster}")
    if "chief" in cluster and len(cluster["chief"]) != 1:
        raise ValueError(f"TF_CONFIG: a cluster has at most one chief, got {cluster['chief']}")
    return config


# ------------------------------------------------------------------------------------ strategies
def make_strategy(name: str = "default", *, devices: Sequence[str] | None = None, communication: str = "auto",
                  ps_shards: int | None = None, min_shard_bytes: int | None = None,
                  heartbeat_timeout_s: float | None = None):
    """Build a :class:`tf.distribute.Strategy` by name: ``default``, ``mirrored``, ``multi_worker``
    or ``parameter_server``.

    Args:
      name: one of :data:`STRATEGIES`.
      devices: ``mirrored`` only: the devices to mirror over (default: all local GPUs, or the CPU).
      communication: ``multi_worker`` only: ``"auto"``, ``"ring"`` (gRPC, CPU or GPU) or
        ``"nccl"`` (GPUs) for the all-reduce.
      ps_shards: ``parameter_server`` only: cut each embedding table into this many shards
        (default: one per ps task); or
      min_shard_bytes: ``parameter_server`` only: as many shards as keep each this large.
      heartbeat_timeout_s: ``multi_worker`` only: how long the cluster's coordination service
        waits for a task's heartbeat before it declares the task dead and aborts every collective
        (TensorFlow's default: 10 s). Longer on crowded or preemptible machines, where a live task
        can stall that long.

    ``parameter_server`` is built on the chief only (the ``worker`` and ``ps`` tasks serve:
    :func:`sasrec_tf.parameter_server.serve`).

    ``multi_worker`` reads ``TF_CONFIG``; without it, the process is a cluster of one worker (which
    is logged, since it is usually a deployment mistake). It must be created before TensorFlow runs
    any operation in this process (TensorFlow's own rule: collective ops are configured at start-up).
    """
    import tensorflow as tf

    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; expected one of {STRATEGIES}")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices=list(devices) if devices else None)
    if name == "parameter_server":
        from sasrec_tf import parameter_server

        return parameter_server.make_strategy(read_tf_config(), num_shards=ps_shards, min_shard_bytes=min_shard_bytes)
    config = read_tf_config()
    if config is None:
        logger.warning("--strategy multi_worker without TF_CONFIG: training as a cluster of one worker")
    implementations = {
        "auto": tf.distribute.experimental.CommunicationImplementation.AUTO,
        "ring": tf.distribute.experimental.CommunicationImplementation.RING,
        "nccl": tf.distribute.experimental.CommunicationImplementation.NCCL,
    }
    if communication not in implementations:
        raise ValueError(f"communication must be one of {sorted(implementations)}, got {communication!r}")
    options = tf.distribute.experimental.CommunicationOptions(implementation=implementations[communication])
    if heartbeat_timeout_s is not None:
        _configure_coordination_service(config, heartbeat_timeout_s)
    try:
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    except RuntimeError as err:  # e.g. "Collective ops must be configured at program startup"
        raise RuntimeError(
            f"could not start MultiWorkerMirroredStrategy ({err}); create the strategy at the start "
            "of the program, before TensorFlow runs any operation"
        ) from err


def _configure_coordination_service(config: dict | None, heartbeat_timeout_s: float) -> None:
    """Start the coordination service ``MultiWorkerMirroredStrategy`` would start, with another
    heartbeat timeout (the strategy keeps a service that is already configured). TensorFlow has no
    public option for it; the calls are those of ``CollectiveAllReduceExtended`` (TF 2.21)."""
    if not (math.isfinite(heartbeat_timeout_s) and heartbeat_timeout_s > 0):
        raise ValueError(f"heartbeat_timeout_s must be a positive number of seconds, got {heartbeat_timeout_s!r}")
    if config is None or config["task"]["type"] not in ("chief", "worker"):
        return  # one process, or a task the service does not coordinate
    import tensorflow as tf
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.distribute import multi_worker_util
    from tensorflow.python.eager import context

    if context.context().coordination_service is not None:
        raise RuntimeError("the coordination service is already configured in this process; "
                           "create the strategy at the start of the program")
    cluster = tf.train.ClusterSpec(config["cluster"])
    jobs = [coordination_config_pb2.CoordinatedJob(name=job, num_tasks=cluster.num_tasks(job))
            for job in ("chief", "worker") if job in cluster.jobs]
    context.context().configure_coordination_service(
        service_type="standalone", service_leader=multi_worker_util.coordination_leader(cluster),
        coordinated_jobs=jobs, heartbeat_timeout_in_ms=int(heartbeat_timeout_s * 1000))


def _in_multi_worker_mode(strategy) -> bool:
    if getattr(strategy, "_should_use_with_coordinator", False):
        return False  # parameter servers: only the chief runs the program (the others serve)
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return False
    spec = resolver.cluster_spec().as_dict()
    return sum(len(tasks) for job, tasks in spec.items() if job in ("chief", "worker")) > 1


def is_chief(strategy=None) -> bool:
    """Whether this process writes the shared files (checkpoints, logs, the final model).

    True outside multi-worker training; under ``MultiWorkerMirroredStrategy``, true on the
    ``chief`` task, or on ``worker`` 0 when the cluster has no chief.
    """
    import tensorflow as tf

    strategy = strategy or tf.distribute.get_strategy()
    if not _in_multi_worker_mode(strategy):
        return True
    return bool(strategy.extended.should_checkpoint)


def worker_index(strategy=None) -> int:
    """This process' index among the training tasks (chief first, then workers); 0 when alone."""
    import tensorflow as tf

    strategy = strategy or tf.distribute.get_strategy()
    if not _in_multi_worker_mode(strategy):
        return 0
    resolver = strategy.cluster_resolver
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return int(resolver.task_id) + (1 if has_chief and resolver.task_type == "worker" else 0)


def num_workers(strategy=None) -> int:
    """How many processes train together (1 outside multi-worker training)."""
    import tensorflow as tf

    strategy = strategy or tf.distribute.get_strategy()
    if not _in_multi_worker_mode(strategy):
        return 1
    spec = strategy.cluster_resolver.cluster_spec().as_dict()
    return sum(len(spec.get(job, [])) for job in ("chief", "worker"))


def global_batch_size(strategy, *, global_batch: int | None = None, per_replica: int | None = None) -> int:
    """The global batch (sequences per synchronous step, all replicas together).

    Give exactly one of ``global_batch`` (returned as is, after a check that it is at least the
    number of replicas) or ``per_replica`` (multiplied by ``strategy.num_replicas_in_sync``).
    A global batch that the replicas do not divide evenly works, but the replicas then get
    unequal shares; this is logged.
    """
    if (global_batch is None) == (per_replica is None):
        raise ValueError("give exactly one of global_batch and per_replica")
    replicas = int(strategy.num_replicas_in_sync)
    if per_replica is not None:
        if per_replica < 1:
            raise ValueError(f"per-replica batch size must be positive, got {per_replica}")
        return int(per_replica) * replicas
    if global_batch < replicas:
        raise ValueError(f"global batch {global_batch} is smaller than the {replicas} replicas")
    if global_batch % replicas:
        logger.warning("global batch %d is not a multiple of the %d replicas: replicas get unequal shares",
                       global_batch, replicas)
    return int(global_batch)


def per_replica_batch_size(global_batch: int, strategy) -> float:
    """What each replica gets per step from ``global_batch`` (fractional when uneven)."""
    return global_batch / int(strategy.num_replicas_in_sync)


@contextlib.contextmanager
def writable_dir(path: str | os.PathLike[str], strategy=None) -> Iterator[Path]:
    """Where this worker should write what belongs in ``path``; removed afterwards unless chief.

    The chief gets ``path`` itself. Other workers get a temporary folder that is deleted when the
    block ends: they must still write (saving a model synchronises variables across workers) but
    their copy is not wanted.
    """
    if is_chief(strategy):
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    scratch = Path(tempfile.mkdtemp(prefix=f"sasrec-worker{worker_index(strategy)}-"))
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def agree(strategy, ok: bool) -> bool:
    """Whether every worker of a multi-worker cluster is ``ok`` (one all-reduce; ``ok`` alone otherwise).

    For a decision that one worker takes and all must follow before any collective op of training:
    the chief refusing a resume (a run directory of another run), say. Without it the other
    workers would start training and wait for the chief until their collective ops time out.
    """
    if not _in_multi_worker_mode(strategy):
        return bool(ok)
    import tensorflow as tf

    flags = strategy.run(lambda: tf.constant(0.0 if ok else 1.0))
    return float(strategy.reduce(tf.distribute.ReduceOp.SUM, flags, axis=None)) == 0.0
