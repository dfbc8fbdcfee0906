"""Helpers for sasrec_tf's tests and benchmarks (not part of the training or serving API)."""

from sasrec_tf.testing.cluster import WorkerResult, free_ports, run_local_cluster

__all__ = ["WorkerResult", "free_ports", "run_local_cluster"]
