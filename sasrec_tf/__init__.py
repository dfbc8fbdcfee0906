"""sasrec-tf: SASRec (Self-Attentive Sequential Recommendation) for TensorFlow.

Importing this package selects Keras 2 (``tf_keras``) for TensorFlow in a fresh process, so that
tensorflow-recommenders works. It must therefore run before anything touches ``tf.keras``; if
Keras 3 is already active, the core still works (it is written against ``tf_keras``) and only the
features that need tensorflow-recommenders raise :class:`TFRSUnavailableError`.
"""

import os as _os

_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from sasrec_tf._compat import TFRSUnavailableError, import_tfrs  # noqa: E402
from sasrec_tf.config import SASRecConfig  # noqa: E402
from sasrec_tf.model import SASRec  # noqa: E402

__version__ = "0.1.0"

__all__ = ["SASRec", "SASRecConfig", "TFRSUnavailableError", "import_tfrs", "__version__"]
