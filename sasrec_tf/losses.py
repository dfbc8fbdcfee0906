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
  Vasilev, RecSys 2023); :func:`chunked_full_softmax_crossentropy` computes the same value and
  gradients over chunks of items, so its memory does not grow with the catalogue.
* :func:`inbatch_softmax_crossentropy` -- in-batch negatives with the semantics of
  tensorflow-recommenders' ``Retrieval`` task (accidental hits removed, optional
  sampling-probability correction), computed over the batch's distinct items.
* :func:`mixed_softmax_crossentropy` -- Mixed Negative Sampling (Yang et al., WWW 2020
  companion): the batch's positives and ``k`` sampled items shared by the batch, each candidate
  with its own log-q correction.
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


def chunked_full_softmax_crossentropy(queries, item_matrix, labels, chunk_size: int, mask=None) -> tf.Tensor:
    """:func:`full_softmax_crossentropy` of ``queries @ item_matrix^T`` without its ``[M, N + 1]`` logits.

    ``queries [M, d]`` score every row of ``item_matrix [N + 1, d]`` (row 0, the padding id,
    takes no part); ``labels [M]`` are the target ids, ``mask [M]`` (optional) the rows that
    count. The logsumexp over items is accumulated over chunks of ``chunk_size`` items, and a
    custom gradient recomputes each chunk's softmax in the backward pass, so no tensor larger than
    ``[M, chunk_size]`` (besides the table and its gradient) exists at any time: forward and
    backward each run the chunks one after another in a ``tf.while_loop``. The value and gradients
    equal the materialised computation's up to float rounding; the cost is one more
    ``[M, d] x [d, chunk_size]`` product per chunk (the backward's recomputed logits).

    Args:
      queries: ``[M, d]`` float tensor.
      item_matrix: ``[N + 1, d]`` float tensor (or variable) of the queries' dtype.
      labels: ``[M]`` integer target ids in ``1..N``.
      chunk_size: positive Python integer, the items scored at once.
      mask: ``[M]`` booleans or ``None`` (every row counts).

    Returns:
      The scalar mean cross-entropy over the rows of ``mask``.

    Raises:
      ValueError: ``chunk_size`` is not a positive integer.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    queries = tf.convert_to_tensor(queries)
    item_matrix = tf.convert_to_tensor(item_matrix, dtype=queries.dtype)
    labels = tf.convert_to_tensor(labels)
    num_rows = tf.shape(item_matrix)[0]
    num_chunks = (num_rows + chunk_size - 1) // chunk_size
    positions = tf.range(chunk_size)

    @tf.custom_gradient
    def per_position(q, matrix):
        # The loops take no gradient of their own (the custom one below replaces it): without
        # stop_gradient a watching tape would make them keep every chunk's logits.
        q, matrix = tf.stop_gradient(q), tf.stop_gradient(matrix)
        # Zero rows pad the table to whole chunks (every chunk has a static shape, which XLA needs).
        padded = tf.pad(matrix, [[0, num_chunks * chunk_size - num_rows], [0, 0]])
        table_chunks = tf.reshape(padded, [num_chunks, chunk_size, tf.shape(matrix)[1]])

        def chunk_logits(chunk):
            ids = chunk * chunk_size + positions
            logits = tf.matmul(q, table_chunks[chunk], transpose_b=True)  # [M, chunk_size]
            # The padding id and the zero rows take no part (a finite logit, whose exp is 0).
            valid = tf.logical_and(ids >= 1, ids < num_rows)
            return tf.where(valid[tf.newaxis, :], logits, tf.cast(_EXCLUDED_LOGIT, logits.dtype))

        def forward(chunk, running):
            return chunk + 1, tf.experimental.numpy.logaddexp(running, tf.reduce_logsumexp(chunk_logits(chunk), axis=-1))

        start = tf.fill(tf.shape(q)[:1], tf.cast(-float("inf"), q.dtype))
        _, logsumexp = tf.while_loop(lambda chunk, _: chunk < num_chunks, forward, (0, start),
                                     parallel_iterations=1, maximum_iterations=num_chunks)
        targets = tf.gather(matrix, labels)
        loss = logsumexp - tf.reduce_sum(q * targets, axis=-1)

        def grad(upstream):  # upstream [M]: d(result) / d(each row's loss)
            def backward(chunk, grad_q, grad_chunks):
                # The chunk's softmax, recomputed, weighted by each row's upstream gradient.
                weights = tf.exp(chunk_logits(chunk) - logsumexp[:, tf.newaxis]) * upstream[:, tf.newaxis]
                return (chunk + 1, grad_q + tf.matmul(weights, table_chunks[chunk]),
                        grad_chunks.write(chunk, tf.matmul(weights, q, transpose_a=True)))

            grad_chunks = tf.TensorArray(q.dtype, size=num_chunks,
                                         element_shape=tf.TensorShape([chunk_size]).concatenate(q.shape[1:]))
            _, grad_q, grad_chunks = tf.while_loop(lambda chunk, *_: chunk < num_chunks, backward,
                                                   (0, tf.zeros_like(q), grad_chunks), parallel_iterations=1,
                                                   maximum_iterations=num_chunks)
            grad_q -= upstream[:, tf.newaxis] * targets
            grad_matrix = tf.reshape(grad_chunks.stack(), tf.shape(padded))[:num_rows]
            grad_matrix -= tf.math.unsorted_segment_sum(upstream[:, tf.newaxis] * q, labels, num_rows)
            return grad_q, grad_matrix

        return loss, grad

    return masked_mean(per_position(queries, item_matrix), mask)


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
    column, first_row, shift = _distinct_candidates(candidate_ids, candidate_sampling_probability, queries.dtype)
    logits = tf.matmul(queries, tf.gather(candidate_embeddings, first_row), transpose_b=True) + shift  # [M, U]
    per_query = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=column, logits=logits)
    return tf.math.divide_no_nan(tf.reduce_sum(per_query), tf.cast(tf.shape(queries)[0], per_query.dtype))


def _distinct_candidates(candidate_ids, candidate_sampling_probability, dtype):
    """The in-batch candidates as the ``U`` distinct items of ``candidate_ids [M]``: each row's
    column ``[M]``, each column's first row ``[U]``, and the ``[M, U]`` shift every logit gets:
    ``log c_u`` (an item that is the target of ``c_u`` rows counts ``c_u`` times), except in a
    row's own column (other queries' copies of its positive are accidental hits: it counts once),
    minus ``log q_u`` with a sampling probability (log-q correction)."""
    unique_ids, column, counts = tf.unique_with_counts(candidate_ids)
    num_unique = tf.shape(unique_ids)[0]
    first_row = tf.math.unsorted_segment_min(tf.range(tf.shape(candidate_ids)[0]), column, num_unique)
    log_counts = tf.math.log(tf.cast(counts, dtype))
    positive_column = tf.one_hot(column, num_unique, dtype=dtype)
    shift = log_counts[tf.newaxis, :] - positive_column * tf.gather(log_counts, column)[:, tf.newaxis]
    if candidate_sampling_probability is not None:
        shift -= tf.math.log(tf.cast(tf.gather(candidate_sampling_probability, first_row), dtype))[tf.newaxis, :]
    return column, first_row, shift


def served_inbatch_softmax_crossentropy(queries, trained_embeddings, tower_embeddings, candidate_ids,
                                        candidate_sampling_probability=None, warm_weight: float = 1.0) -> tf.Tensor:
    """In-batch softmax cross-entropy over a catalogue served as it is for cold items: each of the
    batch's ``U`` distinct items is a candidate twice, by its trained vector (as a warm item) and by
    its cold-tower vector (as a cold one). Two terms per query, their mean over the ``M`` queries:
    its target's tower vector against the other items' vectors of both kinds (a cold target must
    win against the whole served catalogue), and its target's trained vector against the same
    candidates (a warm target must not lose to other items' tower vectors). In each, the target's
    other vector is no candidate, and another query's copy of the target counts once, as in
    :func:`inbatch_softmax_crossentropy`.

    Args:
      queries: ``[M, d]``; row ``i`` queries ``candidate_ids[i]``.
      trained_embeddings: ``[M, d]`` the targets' trained vectors (rows of one id equal).
      tower_embeddings: ``[M, d]`` the targets' tower vectors.
      candidate_ids: ``[M]`` the targets' item ids.
      candidate_sampling_probability: ``[M]`` or ``None``: log-q correction, subtracted from both
        columns of an item.
      warm_weight: the weight of the warm-target term (the cold-target term's is 1).

    Returns:
      The scalar mean over the queries of the cold term plus ``warm_weight`` times the warm one.
    """
    column, first_row, shift = _distinct_candidates(candidate_ids, candidate_sampling_probability, queries.dtype)
    num_unique = tf.shape(first_row)[0]
    trained = tf.matmul(queries, tf.gather(trained_embeddings, first_row), transpose_b=True) + shift  # [M, U]
    tower = tf.matmul(queries, tf.gather(tower_embeddings, first_row), transpose_b=True) + shift  # [M, U]
    own = tf.one_hot(column, num_unique, on_value=True, off_value=False)
    excluded = tf.cast(_EXCLUDED_LOGIT, trained.dtype)
    # Columns [0, U): trained vectors; [U, 2U): tower vectors.
    cold_target = tf.concat([tf.where(own, excluded, trained), tower], axis=-1)
    warm_target = tf.concat([trained, tf.where(own, excluded, tower)], axis=-1)
    per_query = (tf.nn.sparse_softmax_cross_entropy_with_logits(labels=column + num_unique, logits=cold_target)
                 + warm_weight * tf.nn.sparse_softmax_cross_entropy_with_logits(labels=column, logits=warm_target))
    return tf.math.divide_no_nan(tf.reduce_sum(per_query), tf.cast(tf.shape(queries)[0], per_query.dtype))


def mixed_softmax_crossentropy(queries, positive_embeddings, positive_ids, negative_embeddings, negative_ids,
                               positive_log_q=None, negative_log_q=None) -> tf.Tensor:
    """Softmax cross-entropy over in-batch positives plus shared sampled negatives, mean per query.

    Mixed Negative Sampling (Yang et al., "Mixed Negative Sampling for Learning Two-tower Neural
    Networks in Recommendations", WWW 2020 companion): the candidates of every query are the
    batch's positives (as :func:`inbatch_softmax_crossentropy`: another query's copy of the
    query's own positive is removed, so the positive counts once) plus ``k`` items sampled once for
    the whole batch, of which a copy of the query's own positive is masked (an accidental hit).
    Sampled items cover the unpopular tail that in-batch candidates, drawn by popularity, rarely
    hold.

    Args:
      queries: ``[M, d]``; row ``i`` queries the item ``positive_ids[i]``.
      positive_embeddings: ``[M, d]`` the positives' rows of the item table (rows of one id equal).
      positive_ids: ``[M]`` integer item ids.
      negative_embeddings: ``[k, d]`` the shared sampled items' rows.
      negative_ids: ``[k]`` their ids.
      positive_log_q: ``[M]`` or ``None``: each positive's log probability as an in-batch
        candidate, subtracted from its logit wherever it is a candidate (log-q correction, as
        TFRS's ``candidate_sampling_probability``).
      negative_log_q: ``[k]`` or ``None``: each sampled item's log probability under its sampler.

    Returns:
      The scalar mean cross-entropy over the ``M`` queries (0 when there are none).
    """
    unique_ids, column, counts = tf.unique_with_counts(positive_ids)
    num_unique = tf.shape(unique_ids)[0]
    first_row = tf.math.unsorted_segment_min(tf.range(tf.shape(positive_ids)[0]), column, num_unique)
    # In-batch part over the distinct positives, as inbatch_softmax_crossentropy: [M, U].
    batch_logits = tf.matmul(queries, tf.gather(positive_embeddings, first_row), transpose_b=True)
    log_counts = tf.math.log(tf.cast(counts, batch_logits.dtype))
    positive_column = tf.one_hot(column, num_unique, dtype=batch_logits.dtype)
    batch_logits += log_counts[tf.newaxis, :] - positive_column * tf.gather(log_counts, column)[:, tf.newaxis]
    if positive_log_q is not None:
        batch_logits -= tf.gather(tf.cast(positive_log_q, batch_logits.dtype), first_row)[tf.newaxis, :]
    # Sampled part: [M, k], a copy of the query's own positive masked.
    sampled_logits = tf.matmul(queries, negative_embeddings, transpose_b=True)
    if negative_log_q is not None:
        sampled_logits -= tf.cast(negative_log_q, sampled_logits.dtype)[tf.newaxis, :]
    hit = tf.equal(positive_ids[:, tf.newaxis], tf.cast(negative_ids, positive_ids.dtype)[tf.newaxis, :])
    sampled_logits = tf.where(hit, tf.cast(_EXCLUDED_LOGIT, sampled_logits.dtype), sampled_logits)
    logits = tf.concat([batch_logits, sampled_logits], axis=-1)
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
