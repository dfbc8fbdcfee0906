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


# The files that take a minute or more (subprocess chains, clusters, several CLI runs), started
# first: the suite runs in two processes, a file each at a time (README), and a long file taken
# last would leave one process working alone at the end. Only the order changes.
LONG_FILES = ("test_kill_anywhere.py", "test_daily_loop.py", "test_distribute.py", "test_parameter_server.py",
              "test_tune.py", "test_cli.py", "test_training.py", "test_warmstart.py", "test_experiment.py",
              "test_item_features_cli.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FILES)))  # stable: the rest keep their order
