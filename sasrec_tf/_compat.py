"""Keras-version handling.

TensorFlow 2.16+ ships Keras 3 as ``tf.keras``; tensorflow-recommenders needs Keras 2, which lives
in the ``tf_keras`` package and is selected for TensorFlow by ``TF_USE_LEGACY_KERAS=1`` *before*
``tf.keras`` is first touched. ``sasrec_tf/__init__`` sets the variable; all model code here is
written directly against ``tf_keras`` so it works whichever Keras the process ended up with. Only
features that need tensorflow-recommenders go through :func:`import_tfrs`.
"""

from __future__ import annotations

import os
import sys

import tf_keras as keras  # noqa: F401  (re-exported: the one Keras this package uses)

__all__ = ["keras", "TFRSUnavailableError", "import_tfrs", "legacy_keras_active"]


class TFRSUnavailableError(ImportError):
    """tensorflow-recommenders cannot be used in this process."""


def legacy_keras_active() -> bool:
    """Whether ``tf.keras`` in this process resolves to Keras 2 (tf_keras)."""
    import tensorflow as tf

    version = getattr(tf.keras, "__version__", None)
    if version is None:  # tf_keras' API module has no __version__; Keras 3's has one
        return True
    return str(version).startswith("2.")


def import_tfrs():
    """Import and return ``tensorflow_recommenders`` or explain why it cannot be used."""
    if "tensorflow_recommenders" in sys.modules:
        return sys.modules["tensorflow_recommenders"]
    if not legacy_keras_active():
        raise TFRSUnavailableError(
            "This feature needs tensorflow-recommenders, which requires Keras 2, but this process "
            "already uses Keras 3 as tf.keras (something touched tf.keras before sasrec_tf was "
            "imported, without TF_USE_LEGACY_KERAS=1). Fix: import sasrec_tf before anything that "
            "uses tf.keras, or start Python with TF_USE_LEGACY_KERAS=1 in the environment. "
            f"(TF_USE_LEGACY_KERAS={os.environ.get('TF_USE_LEGACY_KERAS')!r})"
        )
    try:
        import tensorflow_recommenders as tfrs
    except ImportError as err:  # pragma: no cover - depends on the installation
        raise TFRSUnavailableError(
            f"tensorflow-recommenders could not be imported ({err}); "
            "install the versions pinned in requirements.txt."
        ) from err
    return tfrs
