"""Training objectives of SASRec: the paper's sampled BCE and the stronger options since 2018.

Shapes: the objectives gather the ``M`` real (non-padding) target positions of a batch first, so the
losses here see ``positive_logits [M]`` (or ``[B, T]``) and ``negative_logits [M, K]`` (or
``[B, T, K]``) and a ``mask`` of the positive's shape (``True`` where a target exists; ``None``
means every row is real). Each returns a scalar: the mean over real positions.

* :func:`sampled_binary_crossentropy` -- the paper (Kang & McAuley 2018, Eq. 6), 1 or k negatives.
* :func:`bpr` -- Bayesian personalised ranking, pairwise, on k negatives.
* :func:`generalized_binary_crossentropy` -- gBCE (Petrov & Macdonald, RecSys 2023), with
  :func:`gbce_beta` for the calibration exponent.
* :func:`sampled_softmax_crossentropy` -- softmax over the positive and k sampled negatives, with
  optional log-q correction for non-uniform sampling.
* :func:`full_softmax_crossentropy` -- cross-entropy over the whole catalogue (Klenitskiy &
  Vasilev, RecSys 2023).
* :func:`inbatch_softmax_crossentropy` -- in-batch negatives with the semantics of
  tensorflow-recommenders' ``Retrieval`` task (accidental hits removed, optional
  sampling-probability correction), computed over the batch's distinct items.
* :func:`contrastive_infonce` -- an auxiliary term, not an objective of its own: InfoNCE between
  two dropout views of each sequence (CL4SRec / DuoRec), same-target sequences not pushed apart.
"""

from __future__ import annotations

import tensorflow as tf

# A logit that takes no part in a softmax (finite, so that 0 * it stays 0 in gradients).
_EXCLUDED_LOGIT = -1e9


def masked_mean(values: tf.Tensor, mask: tf.Tensor | None = None) -> tf.Tensor:
    """Mean of ``values`` over positions where ``mask`` is true (0 when there are none)."""
    if mask is None:
        mask = tf.ones_like(values, dtype=tf.bool)
    mask = tf.cast(mask, values.dtype)
    return tf.math.divide_no_nan(tf.reduce_sum(values * mask), tf.reduce_sum(mask))


def _negative_weights(negative_logits: tf.Tensor, negative_mask: tf.Tensor | None) -> tf.Tensor:
    if negative_mask is None:
        return tf.ones_like(negative_logits)
    return tf.cast(negative_mask, negative_logits.dtype)


def sampled_binary_crossentropy(positive_logits, negative_logits, mask, negative_mask=None) -> tf.Tensor:
    """The paper's loss: ``-log σ(r_pos) - Σ_k log(1 - σ(r_neg_k))`` per position, masked mean.

    With one negative per position this is exactly Kang & McAuley's Eq. (6). ``negative_mask``
    (``[..., K]``, optional) drops negatives that must not count, e.g. a popularity-sampled
    negative that happens to be the positive.
    """
    positive = tf.nn.softplus(-positive_logits)  # -log σ(x)
    if negative_mask is None:
        negative = tf.reduce_sum(tf.nn.softplus(negative_logits), axis=-1)  # -log(1 - σ(x))
    else:
        negative = tf.reduce_sum(tf.nn.softplus(negative_logits) * _negative_weights(negative_logits, negative_mask),
                                 axis=-1)
    return masked_mean(positive + negative, mask)


def bpr(positive_logits, negative_logits, mask=None, negative_mask=None) -> tf.Tensor:
    """Bayesian personalised ranking (Rendle et al., UAI 2009): ``-log σ(s⁺ - s⁻)`` averaged over
    a position's (kept) negatives, then the masked mean over positions. A pairwise loss: only the
    margin between the positive and each negative matters, not the logits' absolute level."""
    weights = _negative_weights(negative_logits, negative_mask)
    per_pair = tf.nn.softplus(negative_logits - positive_logits[..., tf.newaxis])  # -log σ(s⁺ - s⁻)
    per_position = tf.math.divide_no_nan(tf.reduce_sum(per_pair * weights, axis=-1), tf.reduce_sum(weights, axis=-1))
    return masked_mean(per_position, mask)


def gbce_beta(num_negatives: int, num_items: int, t: float) -> float:
    """gSASRec's calibration exponent ``β = α (t (1 - 1/α) + 1/α)``, ``α = k / (N - 1)``.

    ``α`` is the negative sampling rate (``k`` negatives out of the ``N - 1`` items that are not
    the positive). ``t = 0`` gives ``β = 1`` (plain BCE); ``t = 1`` gives ``β = α``, which makes
    the predicted probabilities match those of a model trained on all negatives.
    """
    if num_items < 2 or num_negatives < 1:
        raise ValueError(f"need num_items >= 2 and num_negatives >= 1, got {num_items}, {num_negatives}")
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"t must be in [0, 1], got {t}")
    alpha = num_negatives / (num_items - 1)
    return alpha * (t * (1.0 - 1.0 / alpha) + 1.0 / alpha)


def generalized_binary_crossentropy(positive_logits, negative_logits, mask, beta: float,
                                    negative_mask=None) -> tf.Tensor:
    """gBCE (Petrov & Macdonald, "gSASRec", RecSys 2023, Eq. 5), masked mean over positions::

        L = -1 / (k + 1) * ( log σ(s⁺)^β + Σ_k log(1 - σ(s⁻_k)) )

    ``-log σ(s)^β = β · softplus(-s)``, computed in that stable form (the authors' code instead
    rewrites the positive logit so that BCE sees ``σ(s)^β``: the same value and gradient). With
    ``β = 1`` this is the paper's BCE divided by ``k + 1``.
    """
    num_negatives = tf.cast(tf.shape(negative_logits)[-1], positive_logits.dtype)
    positive = beta * tf.nn.softplus(-positive_logits)
    negative = tf.reduce_sum(tf.nn.softplus(negative_logits) * _negative_weights(negative_logits, negative_mask),
                             axis=-1)
    return masked_mean((positive + negative) / (num_negatives + 1.0), mask)


def sampled_softmax_crossentropy(positive_logits, negative_logits, mask=None, negative_mask=None,
                                 positive_log_q=None, negative_log_q=None) -> tf.Tensor:
    """Cross-entropy of the positive among itself and ``k`` sampled negatives, masked mean::

        L = -log( exp(s⁺ - log q⁺) / (exp(s⁺ - log q⁺) + Σ_k exp(s⁻_k - log q⁻_k)) )

    ``positive_log_q`` / ``negative_log_q`` (optional, same shapes as the logits) are the log
    sampling probabilities for the log-q correction (Bengio & Senécal 2008; Yi et al. 2019); for
    uniform sampling they are constant and change nothing. ``negative_mask`` removes negatives
    (accidental hits: a sampled item equal to the positive).
    """
    if positive_log_q is not None:
        positive_logits = positive_logits - positive_log_q
    if negative_log_q is not None:
        negative_logits = negative_logits - negative_log_q
    if negative_mask is not None:
        negative_logits = tf.where(negative_mask, negative_logits, _EXCLUDED_LOGIT)
    logits = tf.concat([positive_logits[..., tf.newaxis], negative_logits], axis=-1)
    per_position = tf.reduce_logsumexp(logits, axis=-1) - positive_logits
    return masked_mean(per_position, mask)


def full_softmax_crossentropy(logits, labels, mask=None) -> tf.Tensor:
    """Cross-entropy over the whole catalogue ("Turning Dross Into Gold Loss", RecSys 2023).

    ``logits [..., N + 1]`` score every item id (column 0, the padding id, is excluded from the
    softmax), ``labels [...]`` are the target ids. Memory: the logits alone take
    ``positions × (N + 1) × 4`` bytes, and training keeps about three tensors of that size
    (logits, softmax, gradient). The model only scores real positions, so ``positions`` is the
    number of targets in a batch (at most ``batch_size × max_len``): for 128 × 50 positions and a
    1M-item catalogue that is 25.6 GB per tensor, so past a few hundred thousand items use the
    sampled or in-batch objectives instead.
    """
    num_classes = tf.shape(logits)[-1]
    padding_column = tf.one_hot(0, num_classes, on_value=_EXCLUDED_LOGIT, off_value=0.0, dtype=logits.dtype)
    per_position = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits + padding_column)
    return masked_mean(per_position, mask)


def inbatch_softmax_crossentropy(queries, candidate_embeddings, candidate_ids,
                                 candidate_sampling_probability=None) -> tf.Tensor:
    """In-batch softmax cross-entropy, mean per query; equal to tensorflow-recommenders' ``Retrieval``.

    Row ``i`` of ``queries [M, d]`` is the query whose positive is row ``i`` of
    ``candidate_embeddings [M, d]`` (item ``candidate_ids[i]``); the other rows are its negatives,
    except rows of the same item (accidental hits), which are removed. Rows with the same id must
    hold the same embedding (they are the same item's).
    ``candidate_sampling_probability [M]`` (one value per item) subtracts ``log q`` from every
    candidate's logit (log-q correction).

    The value and gradients are those of ``tfrs.tasks.Retrieval(remove_accidental_hits=True)``
    with a summed ``CategoricalCrossentropy`` divided by ``M`` (tests check both), but the logits
    are ``[M, U]`` over the ``U`` distinct items of the batch instead of ``[M, M]``: an item that
    is the target of ``c`` rows contributes ``c`` equal terms to every other query's softmax
    denominator, i.e. one term with ``log c`` added. ``U`` is bounded by the catalogue, so dense
    data with long sequences (tens of thousands of target positions per batch) fits in memory;
    the ``[M, M]`` form needs ``4 M^2`` bytes per copy (about 4.8 GB at M = 34,639, a MovieLens-100K
    batch of 256 users at ``max_len`` 200).
    """
    unique_ids, column, counts = tf.unique_with_counts(candidate_ids)
    num_unique = tf.shape(unique_ids)[0]
    rows = tf.range(tf.shape(candidate_ids)[0])
    first_row = tf.math.unsorted_segment_min(rows, column, num_unique)
    logits = tf.matmul(queries, tf.gather(candidate_embeddings, first_row), transpose_b=True)  # [M, U]
    log_counts = tf.math.log(tf.cast(counts, logits.dtype))
    # Other queries' copies of the positive are accidental hits: the positive counts once.
    positive_column = tf.one_hot(column, num_unique, dtype=logits.dtype)
    logits += log_counts[tf.newaxis, :] - positive_column * tf.gather(log_counts, column)[:, tf.newaxis]
    if candidate_sampling_probability is not None:
        log_q = tf.math.log(tf.cast(tf.gather(candidate_sampling_probability, first_row), logits.dtype))
        logits -= log_q[tf.newaxis, :]
    per_query = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=column, logits=logits)
    return tf.math.divide_no_nan(tf.reduce_sum(per_query), tf.cast(tf.shape(queries)[0], per_query.dtype))


def contrastive_infonce(first, second, labels=None, temperature: float = 1.0) -> tf.Tensor:
    """InfoNCE between two views of the same ``B`` sequences (NT-Xent of SimCLR, as CL4SRec and
    DuoRec apply it to sequence representations): ``first [B, d]``, ``second [B, d]``.

    The ``2B`` views are scored against each other by dot product over ``temperature``; each view's
    positive is the other view of its own sequence, its negatives the other ``2B - 2`` views,
    minus those whose ``labels`` (``[B]``, e.g. the next item) equal its own: sequences with the
    same next item are not pushed apart (false negatives, masked as in DuoRec and ICSRec). Rows
    with label 0 (none) take no part at all. Mean over the participating views.
    """
    batch = tf.shape(first)[0]
    views = tf.concat([first, second], axis=0)  # [2B, d]
    logits = tf.matmul(views, views, transpose_b=True) / temperature  # [2B, 2B]
    rows = tf.range(2 * batch)
    partner = tf.math.floormod(rows + batch, 2 * batch)
    if labels is None:
        labels = tf.range(1, batch + 1)
    labels = tf.concat([labels, labels], axis=0)
    valid = tf.not_equal(labels, 0)
    same_label = tf.equal(labels[:, tf.newaxis], labels[tf.newaxis, :])
    is_partner = tf.equal(rows[tf.newaxis, :], partner[:, tf.newaxis])
    # Columns a view may not see: itself, views of the same label (but its partner), label-less views.
    hidden = tf.logical_or(tf.logical_and(same_label, tf.logical_not(is_partner)), tf.logical_not(valid)[tf.newaxis, :])
    logits = tf.where(hidden, tf.cast(_EXCLUDED_LOGIT, logits.dtype), logits)
    per_view = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=partner, logits=logits)
    return masked_mean(per_view, valid)


def pairwise_accuracy(positive_logits, negative_logits, mask) -> tf.Tensor:
    """Fraction of (position, negative) pairs where the positive scores higher: a sampled AUC."""
    wins = tf.reduce_mean(tf.cast(positive_logits[..., tf.newaxis] > negative_logits, tf.float32), axis=-1)
    return masked_mean(wins, mask)
