"""Training with the item table sharded over parameter servers (``--strategy parameter_server``).

TensorFlow's ``ParameterServerStrategy`` with Keras' ``model.fit``: the cluster in ``TF_CONFIG``
has one ``chief``, one or more ``worker`` tasks and one or more ``ps`` tasks. The **same command
line** starts every task; the role comes from ``TF_CONFIG``:

* ``ps`` and ``worker`` tasks start a :class:`tf.distribute.Server` and serve until they are
  stopped (:func:`serve`): parameter servers hold the variables, workers run the training steps
  the chief sends them. They read no data and write nothing.
* the ``chief`` reads the data, builds the model (its variables are placed on the ps tasks),
  and drives ``model.fit`` through a ``ClusterCoordinator``: each step runs on a free worker, on
  that worker's own copy of the input pipeline, asynchronously (no all-reduce; a step reads the
  variables as they are and adds its update). It validates, evaluates, checkpoints and writes the
  run directory; its exit status is the run's.

Only the embedding tables (the item table, the separate output table when it is not shared, the
user table) are **sharded**, by rows, by :class:`TablePartitioner`: into ``num_shards`` parts, or
into as many parts of at least ``min_shard_bytes`` as the ps tasks allow; the other weights are
small and each lives whole on one ps task (round robin). Adam's two slots of a table shard live
beside it, so the table and its optimizer state are spread over the ps tasks. Every other ps task
memory is about ``3 x table / shards`` (values, two moments).

After training the chief gathers the trained weights into an ordinary (unsharded) model
(:func:`unsharded_copy`, one shard at a time): the final evaluation, the saved model directory and
any export are then exactly those of a single-process run, and need the table's memory once on the
chief (not its optimizer slots).
"""

from __future__ import annotations

import contextlib
import logging
import math
from typing import Iterator, Mapping, Sequence

__all__ = ["TablePartitioner", "check_table_shapes", "make_strategy", "serve", "table_shards", "unsharded_copy",
           "uses_coordinator", "worker_seeds"]

logger = logging.getLogger(__name__)

TASK_TYPES = ("chief", "worker", "ps")


class TablePartitioner:
    """A ``variable_partitioner`` that shards only the tables it is told about, by rows.

    ``ParameterServerStrategy`` calls it for every variable created in its scope with the
    variable's shape; it answers how many parts each axis is cut into. A variable whose shape is
    not one of :meth:`tables`' stays whole (Keras' positional slicing and the dense kernels need
    whole variables; they are small).

    Args:
      max_shards: the most parts (the number of ps tasks: more parts than tasks gain nothing).
      num_shards: cut each table into this many parts (at most ``max_shards``); or
      min_shard_bytes: as many parts as keep each at least this large (at most ``max_shards``).
        Neither: one part per ps task.
    """

    def __init__(self, max_shards: int, *, num_shards: int | None = None, min_shard_bytes: int | None = None):
        if max_shards < 1:
            raise ValueError(f"a parameter-server cluster needs at least one ps task, got {max_shards}")
        if num_shards is not None and min_shard_bytes is not None:
            raise ValueError("give the number of table shards or their minimum size, not both")
        if num_shards is not None and not 1 <= num_shards <= max_shards:
            raise ValueError(f"--ps-shards must be between 1 and the {max_shards} ps task(s), got {num_shards}")
        if min_shard_bytes is not None and min_shard_bytes < 1:
            raise ValueError(f"--min-shard-bytes must be positive, got {min_shard_bytes}")
        self.max_shards = int(max_shards)
        self.num_shards = num_shards
        self.min_shard_bytes = min_shard_bytes
        self._shapes: set[tuple[int, int]] = set()

    @contextlib.contextmanager
    def tables(self, shapes: Sequence[tuple[int, int]]) -> Iterator["TablePartitioner"]:
        """Shard the variables of these ``(rows, columns)`` shapes while the block runs."""
        previous, self._shapes = self._shapes, {tuple(int(n) for n in shape) for shape in shapes}
        try:
            yield self
        finally:
            self._shapes = previous

    def shards_for(self, shape: Sequence[int], itemsize: int = 4) -> int:
        """How many parts a table of this shape is cut into."""
        rows = int(shape[0])
        if self.num_shards is not None:
            return min(self.num_shards, rows)
        if self.min_shard_bytes is None:
            return min(self.max_shards, rows)
        total = rows * int(math.prod(shape[1:])) * itemsize
        return max(1, min(self.max_shards, rows, total // self.min_shard_bytes))

    def __call__(self, shape, dtype, axis: int = 0) -> list[int]:
        dims = [int(n) for n in shape]
        parts = [1] * len(dims)
        if len(dims) == 2 and tuple(dims) in self._shapes:
            parts[0] = self.shards_for(dims, dtype.size if hasattr(dtype, "size") else 4)
        return parts


# What to change when a weight other than a table has a table's shape, by a part of its name.
_CLASH_FIXES = (
    ("positional_embedding", "max_len"),
    ("feed_forward", "hidden_units or ffn_units"),
    ("attribute", "the item features (num_attributes, max_item_attributes)"),
    ("fusion", "hidden_units"),
)


def check_table_shapes(config, num_items: int, num_users: int = 0, **features: int) -> None:
    """Refuse, before any variable exists, a model that :class:`TablePartitioner` would cut wrongly.

    The partitioner learns only a variable's shape, so a weight that is not an embedding table but
    has the shape of one (the positional table when ``max_len == num_items + 1``, a feed-forward
    kernel when ``hidden_units == num_items + 1``) would be sharded too, and its layer fails on a
    ``ShardedVariable``. The model's weights are created in a graph of their own (no memory is
    allocated, whatever the catalogue) and compared with the tables.

    Args:
      config: the :class:`~sasrec_tf.SASRecConfig` to train.
      num_items: the catalogue size; num_users: the user table's rows less one (0: no user table).
      features: the item-feature sizes of :class:`~sasrec_tf.SASRec` (``num_attributes``, ...).

    Raises:
      ValueError: one line naming the clashing weight, its shape, the table and the field to change.
    """
    import tensorflow as tf

    from sasrec_tf.model import SASRec

    d = config.hidden_units
    tables = {(num_items + 1, d): "item table"}
    if num_users:
        tables.setdefault((num_users + 1, d), "user table")
    tf_logger = logging.getLogger("tensorflow")
    level = tf_logger.level
    tf_logger.setLevel(logging.CRITICAL)  # the graph's unused debug asserts complain when it is dropped
    try:
        with tf.Graph().as_default():
            model = SASRec(config, num_items=num_items, num_users=num_users, **features)
            model.build_weights()
            layers = (model.item_embedding, model.output_item_embedding, model.user_embedding)
            owned = [layer.embeddings for layer in layers if layer is not None]
            clashes = [(w.name.split(":")[0], tuple(int(n) for n in w.shape)) for w in model.weights
                       if w.shape.rank == 2 and not any(w is table for table in owned)
                       and tuple(int(n) for n in w.shape) in tables]
            del model, layers, owned
    finally:
        tf_logger.setLevel(level)
    if clashes:
        name, shape = clashes[0]
        fix = next((field for part, field in _CLASH_FIXES if part in name), "hidden_units")
        raise ValueError(
            f"--strategy parameter_server: weight {name} has the {tables[shape]}'s shape {list(shape)} and would be "
            f"sharded like it (tables are chosen by shape); change {fix} so that it differs (e.g. --set)")


def role(config: Mapping | None) -> str | None:
    """This task's type in a parsed ``TF_CONFIG`` (``chief``, ``worker``, ``ps``), or None."""
    if config is None:
        return None
    return str(config["task"]["type"])


def check_cluster(config: Mapping | None) -> None:
    """A parameter-server cluster: one chief, at least one worker and one ps task.

    Raises:
      ValueError: no ``TF_CONFIG``, or a cluster that is not of this shape, saying what is missing.
    """
    if config is None:
        raise ValueError("--strategy parameter_server needs TF_CONFIG with 'chief', 'worker' and 'ps' tasks "
                         "(see docs/distributed.md)")
    cluster = config["cluster"]
    missing = [job for job in TASK_TYPES if not cluster.get(job)]
    if missing or len(cluster["chief"]) != 1:
        raise ValueError(f"--strategy parameter_server needs one 'chief' and at least one 'worker' and 'ps' task in "
                         f"TF_CONFIG's cluster; missing: {', '.join(missing) or 'exactly one chief'}")
    if role(config) not in TASK_TYPES:
        raise ValueError(f"TF_CONFIG task type {role(config)!r}: expected one of {TASK_TYPES}")


def serve(config: Mapping) -> None:
    """Run this ``worker`` or ``ps`` task's server until the process is stopped (never returns)."""
    import tensorflow as tf

    check_cluster(config)
    task = config["task"]
    logger.info("%s %d serving for the chief", task["type"], task["index"])
    server = tf.distribute.Server(tf.train.ClusterSpec(config["cluster"]), job_name=task["type"],
                                  task_index=int(task["index"]), protocol="grpc", start=True)
    print(f"{task['type']} {task['index']}: serving at {server.target}; stop this task when the chief has finished",
          flush=True)
    server.join()


def make_strategy(config: Mapping | None, *, num_shards: int | None = None, min_shard_bytes: int | None = None):
    """The chief's ``ParameterServerStrategy`` for the cluster of ``config`` (parsed ``TF_CONFIG``)
    with a :class:`TablePartitioner` over its ps tasks.

    Raises:
      ValueError: not a parameter-server cluster, this is not the chief, or bad shard options.
    """
    import tensorflow as tf

    check_cluster(config)
    if role(config) != "chief":
        raise ValueError(f"only the chief builds the strategy; this task is a {role(config)} (serve it instead)")
    partitioner = TablePartitioner(len(config["cluster"]["ps"]), num_shards=num_shards,
                                   min_shard_bytes=min_shard_bytes)
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    return tf.distribute.experimental.ParameterServerStrategy(resolver, variable_partitioner=partitioner)


def uses_coordinator(strategy) -> bool:
    """Whether ``fit`` under ``strategy`` is driven by a ``ClusterCoordinator`` (parameter servers)."""
    return bool(getattr(strategy, "_should_use_with_coordinator", False))


def table_partitioner(strategy) -> TablePartitioner | None:
    """The strategy's :class:`TablePartitioner`, if it has one."""
    partitioner = getattr(getattr(strategy, "extended", None), "_variable_partitioner", None)
    return partitioner if isinstance(partitioner, TablePartitioner) else None


def table_shards(model) -> list[dict]:
    """Where each embedding table of ``model`` lives: ``{"table", "shape", "shards": [{"shape", "device"}]}``."""
    found = []
    for name in ("item_embedding", "output_item_embedding", "user_embedding"):
        layer = getattr(model, name, None)
        if layer is None or not layer.built:
            continue
        table = layer.embeddings
        parts = getattr(table, "variables", [table])
        found.append({"table": name, "shape": [int(n) for n in table.shape],
                      "shards": [{"shape": [int(n) for n in part.shape], "device": part.device} for part in parts]})
    return found


def _merged_names(model) -> list[tuple[str, list]]:
    """``model.weights`` grouped per logical variable: the parts of a sharded one together, in order."""
    groups: list[tuple[str, list]] = []
    for weight in model.weights:
        name = weight.name.split(":")[0]
        base, _, part = name.rpartition("/part_")
        if base and part.isdigit():
            if part != "0":
                groups[-1][1].append(weight)
                continue
            name = base
        groups.append((name, [weight]))
    return groups


def unsharded_copy(model):
    """The same trained SASRec as an ordinary model outside the strategy (no shards), its weights
    copied one shard at a time: the chief then needs each table once, not its optimizer slots."""
    import tensorflow as tf

    from sasrec_tf.model import SASRec

    with tf.distribute.get_strategy().scope():  # the default strategy: variables on this process
        copy = SASRec(model.config, num_items=model.num_items, num_users=model.num_users)
        copy.build_weights()
    source = _merged_names(model)
    target = copy.weights
    if [name for name, _ in source] != [w.name.split(":")[0] for w in target]:
        raise ValueError("the sharded and the unsharded model do not have the same weights")
    for variable, (_, parts) in zip(target, source):
        if len(parts) == 1:
            variable.assign(tf.convert_to_tensor(parts[0]))
            continue
        start = 0
        for part in parts:
            rows = int(part.shape[0])
            variable[start:start + rows].assign(tf.convert_to_tensor(part))
            start += rows
    if getattr(model, "optimizer", None) is not None:
        copy.compile(optimizer=model.optimizer.__class__.from_config(model.optimizer.get_config()))
    return copy


def worker_seeds(strategy, seed: int | None):
    """A function, called inside a worker's dataset function, giving that worker's input seed:
    ``seed`` plus the next value of a counter on a ps task that each worker increments once as it
    builds its pipeline. The coordinator builds every worker's pipeline from one traced function;
    with one fixed seed every worker would shuffle alike and draw the same negatives, so the
    workers would train on the same batches."""
    import tensorflow as tf

    with strategy.scope():
        counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="input_pipelines")

    def next_seed():
        return counter.assign_add(1) + (0 if seed is None else int(seed))

    return next_seed
