"""Small seeded SASRec models for tests: the same weights for the same arguments, built, untrained.

Tests that check behaviour (causality, export signatures, serving answers) need a model, not a
good one: random weights from a fixed seed make every run see the same numbers in seconds.
"""

from __future__ import annotations

import numpy as np

from sasrec_tf._compat import keras
from sasrec_tf.artifacts import TrainedModel
from sasrec_tf.config import SASRecConfig
from sasrec_tf.data.vocab import ItemVocabulary
from sasrec_tf.model import SASRec

__all__ = ["TRAINED_MAX_LEN", "TRAINED_NUM_ITEMS", "small_sasrec", "make_trained"]

TRAINED_NUM_ITEMS = 150  # make_trained's catalogue
TRAINED_MAX_LEN = 10  # make_trained's window


def small_sasrec(num_items: int, *, num_users: int = 0, init_seed: int = 0, **config) -> SASRec:
    """A built SASRec with weights drawn from ``init_seed``.

    Args:
        num_items: Catalogue size (ids 1..num_items; 0 is padding).
        num_users: Users of the user embedding, passed only when ``config`` enables one
            (``use_user_embedding=True``); otherwise the model gets 0.
        init_seed: Seed of Keras' random generators before the weights are made.
        **config: ``SASRecConfig`` fields.

    Returns:
        The model, built (``build_weights()``), not compiled.
    """
    config = SASRecConfig(**config)
    keras.utils.set_random_seed(init_seed)
    model = SASRec(config, num_items=num_items, num_users=num_users if config.use_user_embedding else 0)
    return model.build_weights()


def make_trained(seed: int = 0, num_items: int = TRAINED_NUM_ITEMS, **config) -> TrainedModel:
    """A small SASRec (random weights: equivalence does not need training) with ids and counts.

    Args:
        seed: Seed of the weights and of the item counts.
        num_items: Catalogue size; ids are ``sku-<i>``, with one non-ASCII id (``café-7``).
        **config: ``SASRecConfig`` fields over the defaults (max_len ``TRAINED_MAX_LEN``, d 16,
            2 blocks, 2 heads, no dropout).

    Returns:
        A ``TrainedModel`` with the model, its vocabulary and distinct training item counts.
    """
    model = small_sasrec(num_items, init_seed=seed, **{"max_len": TRAINED_MAX_LEN, "hidden_units": 16,
                                                        "num_blocks": 2, "num_heads": 2, "dropout_rate": 0.0,
                                                        **config})
    ids = [f"sku-{i}" for i in range(num_items)]
    ids[7] = "café-7"  # non-ASCII ids travel as UTF-8
    counts = np.concatenate([[0], np.random.default_rng(seed).permutation(num_items) * 3 + 1])  # distinct
    return TrainedModel(model=model, vocab=ItemVocabulary(ids), item_counts=counts)
