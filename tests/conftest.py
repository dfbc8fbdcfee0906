"""Select Keras 2 for TensorFlow before anything imports it (see docs/architecture.md)."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
