"""What every encoder option must keep: causality, padding invariance, save/load, served == offline.

A new mixing layer or feed-forward form is configuration of the same SASRec, so the same four
checks apply to each; they live here once, and each option's test module calls them on a model
whose new weights have been moved off their (often near-zero) initial values, so that a wrong
layer cannot hide behind an identity.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from sasrec_tf._compat import keras
from sasrec_tf.artifacts import TrainedModel, save_trained
from sasrec_tf.export import export_saved_model

__all__ = ["outputs", "assert_causal_and_padding_invariant", "assert_history_cut_at_every_position",
           "assert_saves_and_reloads", "assert_export_serves_offline_top_k"]


def outputs(model, items) -> np.ndarray:
    """The model's ``[batch, max_len, d]`` sequence outputs for ``items`` (inference mode)."""
    return model(tf.constant(items), training=False).numpy()


def assert_causal_and_padding_invariant(model, num_items: int, *, seed: int = 1, atol: float = 1e-5) -> None:
    """Position t ignores every later item; real positions ignore how much padding precedes them.

    Also: the served query (the last block computes its last row only) is the full pass's last
    row. Needs ``model.max_len`` >= 8.
    """
    width = model.max_len
    rng = np.random.default_rng(seed)
    base = np.array([[0, 0, 0] + list(rng.integers(1, num_items + 1, size=width - 3))])
    reference = outputs(model, base)
    for t in (3, width // 2, width - 2):
        changed = base.copy()
        changed[0, t + 1:] = rng.integers(1, num_items + 1, size=width - 1 - t)
        np.testing.assert_allclose(outputs(model, changed)[0, : t + 1], reference[0, : t + 1], atol=atol,
                                   err_msg=f"position {t} saw a later item")
    items = list(rng.integers(1, num_items + 1, size=5))
    full = outputs(model, [[0] * (width - 5) + items])[0, width - 5:]
    np.testing.assert_allclose(outputs(model, [[0] * 2 + items])[0, 2:], full, atol=atol,
                               err_msg="a shorter padded window changed real positions")
    np.testing.assert_allclose(outputs(model, [items])[0], full, atol=atol,
                               err_msg="an unpadded window changed real positions")
    np.testing.assert_allclose(model.query_embeddings(tf.constant(base)).numpy(), reference[:, -1], atol=atol,
                               err_msg="the served query is not the full pass's last row")


def assert_history_cut_at_every_position(model, items: Sequence[int], cuts: Sequence[int], *,
                                         atol: float = 1e-5) -> None:
    """Training position n - 1 of ``items`` equals the served query of the first n items, for n in ``cuts``.

    Holds for models without positional embeddings (SASRec's positions count from the most
    recent item, so there the cut history is a different input on purpose).
    """
    width = model.max_len
    full = outputs(model, [[0] * (width - len(items)) + list(items)])[0, width - len(items):]
    for n in cuts:
        cut = outputs(model, [[0] * (width - n) + list(items[:n])])[0, -1]
        np.testing.assert_allclose(cut, full[n - 1], atol=atol, err_msg=f"the history cut after {n} items")


def assert_saves_and_reloads(model, path: Path, batch) -> None:
    """``model.keras`` written and read back: the same config and bit-identical outputs on ``batch``."""
    model.save(path)
    restored = keras.models.load_model(path)
    assert restored.config == model.config
    batch = tf.constant(batch)
    np.testing.assert_array_equal(restored(batch, training=False).numpy(), model(batch, training=False).numpy())


def assert_export_serves_offline_top_k(trained: TrainedModel, directory: Path, *, k: int = 5,
                                       history: Sequence[str] = ("sku-3", "sku-9", "sku-4")) -> None:
    """The exported ``serving_default`` returns the in-process model's top-k scores, history excluded."""
    save_trained(directory / "model", trained.model, trained.vocab, item_counts=trained.item_counts)
    export = export_saved_model(directory / "model", directory / "exports", "sasrec", k=k)
    loaded = tf.saved_model.load(str(export))
    out = loaded.signatures["serving_default"](history=tf.constant([[""] + list(history)]))
    model, vocab = trained.model, trained.vocab
    dense = vocab.encode(list(history))
    ids = np.zeros((1, model.max_len), np.int64)
    ids[0, -len(dense):] = dense
    scores = model.query_embeddings(tf.constant(ids)).numpy()[0] @ model.item_embeddings().numpy().T
    scores[0] = -np.inf
    scores[dense] = -np.inf  # serving_default excludes the history
    np.testing.assert_allclose(out["scores"].numpy()[0], np.sort(scores)[::-1][:k], rtol=1e-4, atol=1e-5)
