"""Select Keras 2 for TensorFlow before anything imports it (see docs/architecture.md), and the
fixtures several test modules share."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402


@pytest.fixture(scope="module")
def trained():
    """A small untrained SASRec with its vocabulary and item counts
    (:func:`sasrec_tf.testing.models.make_trained`), one per test module."""
    from sasrec_tf.testing.models import make_trained

    return make_trained()
