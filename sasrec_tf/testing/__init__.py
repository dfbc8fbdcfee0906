"""Helpers for sasrec_tf's tests and benchmarks (not part of the training or serving API; no library
module imports this package).

- :mod:`~sasrec_tf.testing.cluster`: free ports, local multi-worker clusters (imported here);
- :mod:`~sasrec_tf.testing.models`: small seeded SASRec models for tests;
- :mod:`~sasrec_tf.testing.properties`: the checks every encoder option keeps (causality, padding
  invariance, save/load, served == offline);
- :mod:`~sasrec_tf.testing.serving`: many clients at once against a model server;
- :mod:`~sasrec_tf.testing.bench`: the benchmarks' TensorFlow environment, log and memory figure;
- :mod:`~sasrec_tf.testing.clock`: the benchmarks' one ``model.fit`` timer;
- :mod:`~sasrec_tf.testing.parity`: the PyTorch reference port and ours at its protocol.

Importing this package (or ``bench``) imports no TensorFlow, so a benchmark can set TensorFlow's
environment first; keep it so.
"""

from sasrec_tf.testing.cluster import WorkerResult, free_ports, run_local_cluster

__all__ = ["WorkerResult", "free_ports", "run_local_cluster"]
