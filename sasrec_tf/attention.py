"""Average attention weights by position, per layer: the paper's Figure 4 for any trained model.

Users' histories go through ``model(..., return_attention_scores=True)``; for every block the
weights are averaged over heads and then, for each (query position, key position) pair, over the
users that have real items at both positions. Positions are the columns of the model's left-padded
input window: the last one (``max_len - 1``) holds the most recent item. On sparse data the mass
sits near the diagonal (recent items); on dense data it reaches further back.

``sasrec-tf attention-plot --model DIR --data PATH --format F --out FILE.png [--max-users N]``
writes the heatmaps (one per layer) and ``FILE.npz`` with the matrices.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import numpy as np


@dataclasses.dataclass
class AttentionMaps:
    """Average attention per layer.

    Attributes:
      weights: ``[num_layers, T, T]`` float64: ``weights[l, i, j]`` = mean weight that query
        position ``i`` gives key position ``j`` in block ``l`` (NaN where no user has real items
        at both positions; 0 above the diagonal: causality).
      counts: ``[T, T]`` int64, the number of users averaged at each pair.
      num_users: users that went in.
    """

    weights: np.ndarray
    counts: np.ndarray
    num_users: int

    @property
    def num_layers(self) -> int:
        """The number of blocks averaged (the first dimension of ``weights``)."""
        return int(self.weights.shape[0])

    def save(self, path: str | Path) -> Path:
        """Write ``weights``, ``counts`` and ``num_users`` to an ``.npz`` file.

        Args:
          path: the file to write; missing parent directories are created.

        Returns:
          ``path`` as a :class:`~pathlib.Path`.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, weights=self.weights, counts=self.counts, num_users=np.int64(self.num_users))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "AttentionMaps":
        """Read maps written by :meth:`save`.

        Args:
          path: an ``.npz`` file written by :meth:`save`.

        Returns:
          The :class:`AttentionMaps` it holds.
        """
        with np.load(path) as arrays:
            return cls(arrays["weights"], arrays["counts"], int(arrays["num_users"]))


def average_attention(
    model: Any,
    sequences: Sequence[np.ndarray],
    *,
    user_ids: Any = None,
    max_users: int | None = None,
    batch_size: int = 256,
    seed: int = 0,
) -> AttentionMaps:
    """Average attention of ``model`` (a :class:`sasrec_tf.SASRec`) over users' histories.

    Args:
      model: a :class:`sasrec_tf.SASRec` with at least one block.
      sequences: per user, dense item ids oldest first; the model reads the last ``max_len``.
      user_ids: ``[n]`` dense user ids ``1..U``, one per sequence; needed when the model has a
        user embedding, ignored otherwise.
      max_users: use a seeded random subset of at most this many users; ``None``: all of them.
      batch_size: histories per forward pass.
      seed: the seed of the ``max_users`` subset.

    Returns:
      :class:`AttentionMaps` with ``[num_blocks, max_len, max_len]`` weights.

    Raises:
      ValueError: the model has no blocks, there are no histories, or the model has a user
        embedding and ``user_ids`` is missing.
    """
    import tensorflow as tf

    from sasrec_tf.data.pipeline import pad_sequences

    if model.config.num_blocks < 1:
        raise ValueError("this model has no attention blocks (num_blocks=0): nothing to plot")
    rows = np.arange(len(sequences))
    if max_users is not None and max_users < len(rows):
        rows = np.sort(np.random.default_rng(seed).choice(len(rows), size=max_users, replace=False))
    if not len(rows):
        raise ValueError("no user histories to average over")
    item_ids = pad_sequences([sequences[i] for i in rows], model.max_len)
    users = None if user_ids is None else np.asarray(user_ids).reshape(-1)[rows].astype(np.int32)
    if model.uses_user_embedding and users is None:
        raise ValueError("this model uses a user embedding: pass user_ids")

    width, layers = model.max_len, model.config.num_blocks
    totals = np.zeros((layers, width, width))
    counts = np.zeros((width, width), np.int64)
    for start in range(0, len(rows), batch_size):
        ids = tf.constant(item_ids[start:start + batch_size])
        inputs = {"item_ids": ids, "user_ids": tf.constant(users[start:start + batch_size])} if users is not None else ids
        _, scores = model(inputs, training=False, return_attention_scores=True)
        real = item_ids[start:start + batch_size] != 0
        both = (real[:, :, None] & real[:, None, :]).astype(np.float64)  # [B, T, T]
        counts += both.sum(axis=0).astype(np.int64)
        for layer, layer_scores in enumerate(scores):
            per_user = layer_scores.numpy().astype(np.float64).mean(axis=1)  # [B, heads, T, T] → [B, T, T]
            totals[layer] += (per_user * both).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        weights = np.where(counts > 0, totals / np.maximum(counts, 1), np.nan)
    return AttentionMaps(weights=weights, counts=counts, num_users=int(len(rows)))


#: The colour scale's top: this percentile of the informative cells (see :func:`colour_scale_max`).
SCALE_PERCENTILE = 95.0


def colour_scale_max(weights: np.ndarray, offset: int = 0) -> float:
    """The top of the heatmaps' colour scale: the :data:`SCALE_PERCENTILE` th percentile of the
    informative cells of ``weights`` (``[layers, T, T]``, the window cropped from position
    ``offset``), i.e. the finite causal cells (key position <= query position) of every query
    position but 0, which can attend only to itself (weight exactly 1 for every user). The
    percentile rather than the maximum keeps the few early positions, which share their weight
    among 2, 3, ... keys (1/2, 1/3, ... under uniform attention), from setting the scale for the
    positions that attend over many. 1.0 when no cell is informative."""
    size = weights.shape[-1]
    query = np.arange(size)[:, None] + offset
    key = np.arange(size)[None, :] + offset
    informative = np.broadcast_to((key <= query) & (query > 0), weights.shape) & np.isfinite(weights)
    values = weights[informative]
    top = float(np.percentile(values, SCALE_PERCENTILE)) if values.size else 0.0
    return top if top > 0 else 1.0


def plot_attention(maps: AttentionMaps, path: str | Path, *, last: int | None = None, title: str | None = None) -> Path:
    """Save one heatmap per layer (query position × key position) as a PNG.

    Uses matplotlib's Agg backend (no display needed); one colour scale is shared by all layers,
    from 0 to :func:`colour_scale_max`: set by the informative cells, not by the trivial ones (query
    position 0 can attend only to itself, weight 1; the first few positions split their weight
    among a few keys), so the bulk of the map is not uniformly dark. Cells above it are drawn in
    the top colour, and the colour bar's arrow says so.

    Args:
      maps: the averages to draw (:func:`average_attention`).
      path: the PNG to write; missing parent directories are created.
      last: crop to the ``last`` most recent positions (at least 1, at most the width);
        ``None``: every position.
      title: the figure's title; ``None``: one naming the number of users.

    Returns:
      ``path`` as a :class:`~pathlib.Path`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    width = maps.weights.shape[-1]
    shown = width if last is None else max(1, min(int(last), width))
    offset = width - shown
    weights = maps.weights[:, offset:, offset:]
    vmax = colour_scale_max(weights, offset)
    fig, axes = plt.subplots(1, maps.num_layers, figsize=(4.2 * maps.num_layers + 0.8, 4.2), squeeze=False)
    for layer, axis in enumerate(axes[0]):
        image = axis.imshow(np.ma.masked_invalid(weights[layer]), cmap="viridis", vmin=0.0, vmax=vmax,
                            origin="upper", interpolation="nearest",
                            extent=(offset - 0.5, width - 0.5, width - 0.5, offset - 0.5))
        axis.set_title(f"layer {layer + 1}")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.yaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_xlabel("key position")
        if layer == 0:
            axis.set_ylabel(f"query position ({width - 1} = most recent)")
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.85, label="average attention weight",
                 extend="max" if np.nanmax(weights) > vmax else "neither")
    fig.suptitle(title or f"Average attention by position ({maps.num_users} users)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
