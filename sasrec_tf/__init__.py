"""sasrec-tf: SASRec (Self-Attentive Sequential Recommendation) for TensorFlow.

Importing this package selects Keras 2 (``tf_keras``) for TensorFlow in a fresh process, so that
tensorflow-recommenders works. It must therefore run before anything touches ``tf.keras``; if
Keras 3 is already active, the core still works (it is written against ``tf_keras``) and only the
features that need tensorflow-recommenders raise :class:`TFRSUnavailableError`.

TensorFlow itself is imported on first use of a name below (``sasrec_tf.SASRec`` ...) or of a
submodule, not by ``import sasrec_tf``: the command line sets TensorFlow's logging up first.
"""

import os as _os

_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from sasrec_tf._lazy import lazy_exports  # noqa: E402  (after the environment is set)

__version__ = "0.1.0"

# Public name → the module that defines it (imported on first access, PEP 562).
_EXPORTS = {
    "SASRec": "sasrec_tf.model",
    "SASRecConfig": "sasrec_tf.config",
    "Recommender": "sasrec_tf.recommender",
    "Recommendations": "sasrec_tf.recommender",
    "TFRSUnavailableError": "sasrec_tf._compat",
    "import_tfrs": "sasrec_tf._compat",
}

__all__ = [*_EXPORTS, "__version__"]


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
