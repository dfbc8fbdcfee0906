"""The names of the evaluation's stages and protocols, declared once (TensorFlow-free).

A leave-one-out run is evaluated on two **stages** -- ``"valid"`` (each user's second-to-last
item) and ``"test"`` (the last) -- under two **protocols**: ``"full"`` ranking against the whole
catalogue and the paper's ``"sampled"`` protocol (the target against sampled negatives).
``metrics.json``, the model card and the publish gate are keyed by these names.
"""

from __future__ import annotations

__all__ = ["STAGES", "PROTOCOLS"]

STAGES = ("valid", "test")
PROTOCOLS = ("full", "sampled")
