"""Serving a SASRec export: TF Serving clients (gRPC, REST) and a local TF Serving-compatible server.

``PredictionClient`` / ``RestClient`` talk to ``tensorflow_model_server`` or to
``LocalModelServer`` (``sasrec-tf serve``), which implements TF Serving's gRPC
``PredictionService`` and ``ModelService`` for development and tests. Every default of the
server and the clients is a field of :class:`ServingOptions` (``sasrec_tf.serving.options``).
Names are imported lazily: ``import sasrec_tf.serving`` stays cheap until one is used.
"""

from __future__ import annotations

import importlib

__all__ = ["PredictionClient", "RestClient", "TopK", "ServingError", "LocalModelServer", "history_tensor",
           "ServingOptions"]

_WHERE = {
    "PredictionClient": "sasrec_tf.serving.client",
    "RestClient": "sasrec_tf.serving.client",
    "TopK": "sasrec_tf.serving.client",
    "history_tensor": "sasrec_tf.serving.client",
    "ServingError": "sasrec_tf.serving.errors",
    "LocalModelServer": "sasrec_tf.serving.server",
    "ServingOptions": "sasrec_tf.serving.options",
}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'sasrec_tf.serving' has no attribute {name!r}")
