"""Training objectives: each loss against a hand-computed case, masking at padding, and each trains."""

import functools

import numpy as np
import pytest
import tensorflow as tf

import sasrec_tf
from sasrec_tf import SASRec, SASRecConfig, losses
from sasrec_tf._compat import keras
from sasrec_tf.data import training_dataset
from sasrec_tf.testing.models import small_sasrec

NUM_ITEMS = 30


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


# ------------------------------------------------------------------------------------ the losses
def test_bce_with_k_negatives_sums_the_negative_terms_per_position():
    pos = tf.constant([[0.0, 1.5]])
    neg = tf.constant([[[9.0, 9.0], [0.5, -2.0]]])
    mask = tf.constant([[False, True]])
    expected = -np.log(sigmoid(1.5)) - np.log(1 - sigmoid(0.5)) - np.log(1 - sigmoid(-2.0))
    assert losses.sampled_binary_crossentropy(pos, neg, mask).numpy() == pytest.approx(expected, rel=1e-6)
    # A masked-out negative (an accidental hit) drops out of the sum.
    keep = tf.constant([[[True, True], [True, False]]])
    expected_kept = -np.log(sigmoid(1.5)) - np.log(1 - sigmoid(0.5))
    assert losses.sampled_binary_crossentropy(pos, neg, mask, keep).numpy() == pytest.approx(expected_kept, rel=1e-6)


def test_bpr_averages_minus_log_sigmoid_of_the_margin_over_the_kept_negatives():
    pos = tf.constant([[9.0, 1.5], [0.2, 0.0]])
    neg = tf.constant([[[0.0, 0.0], [0.5, -2.0]], [[1.0, 0.2], [3.0, 3.0]]])
    mask = tf.constant([[False, True], [True, False]])
    expected = np.mean([(-np.log(sigmoid(1.0)) - np.log(sigmoid(3.5))) / 2,
                        (-np.log(sigmoid(-0.8)) - np.log(sigmoid(0.0))) / 2])
    assert losses.bpr(pos, neg, mask).numpy() == pytest.approx(expected, rel=1e-6)
    keep = tf.constant([[[True, True], [True, False]], [[True, True], [True, True]]])
    expected_kept = np.mean([-np.log(sigmoid(1.0)), (-np.log(sigmoid(-0.8)) - np.log(sigmoid(0.0))) / 2])
    assert losses.bpr(pos, neg, mask, keep).numpy() == pytest.approx(expected_kept, rel=1e-6)


@pytest.mark.parametrize("k,n,t,expected", [
    (4, 101, 0.5, 0.52),     # α = 0.04: β = 0.04 · (0.5 · (1 - 25) + 25) = 0.52
    (4, 101, 0.0, 1.0),      # t = 0: plain BCE
    (4, 101, 1.0, 0.04),     # t = 1: β = α
    (256, 12102, 0.75, 256 / 12101 * (0.75 * (1 - 12101 / 256) + 12101 / 256)),
])
def test_gbce_beta_follows_the_paper(k, n, t, expected):
    assert losses.gbce_beta(k, n, t) == pytest.approx(expected, rel=1e-9)


def test_gbce_matches_the_paper_definition_and_the_authors_logit_transform():
    pos = np.array([1.2, -0.7])
    neg = np.array([[0.3, -1.0, 2.0], [0.0, 0.5, -0.5]])
    beta = losses.gbce_beta(3, 11, 0.6)
    # Paper: L = -1/(k+1) * (log σ(s+)^β + Σ log(1 - σ(s-))), averaged over positions.
    paper = np.mean(-(np.log(sigmoid(pos) ** beta) + np.log(1 - sigmoid(neg)).sum(-1)) / 4)
    # gSASRec's code: replace s+ by s' with σ(s') = σ(s+)^β, then mean BCE over the k + 1 logits.
    transformed = np.log(1.0 / (sigmoid(pos) ** -beta - 1.0))
    bce = np.concatenate([-np.log(sigmoid(transformed))[:, None], -np.log(1 - sigmoid(neg))], axis=1)
    code = bce.mean(axis=1).mean()
    got = losses.generalized_binary_crossentropy(tf.constant(pos, tf.float32), tf.constant(neg, tf.float32),
                                                 None, beta).numpy()
    assert got == pytest.approx(paper, rel=1e-5)
    assert got == pytest.approx(code, rel=1e-5)


def test_gbce_with_beta_one_is_bce_over_k_plus_one():
    pos, neg = tf.constant([0.4, -0.3]), tf.constant([[0.1, 0.9], [-1.0, 0.2]])
    bce = losses.sampled_binary_crossentropy(pos, neg, None).numpy()
    assert losses.generalized_binary_crossentropy(pos, neg, None, 1.0).numpy() == pytest.approx(bce / 3, rel=1e-6)


def test_sampled_softmax_matches_hand_computation():
    pos = tf.constant([[2.0, 0.0, 1.0]])
    neg = tf.constant([[[1.0, 0.0], [5.0, 5.0], [3.0, -1.0]]])
    mask = tf.constant([[True, False, True]])
    row0 = -np.log(np.exp(2.0) / (np.exp(2.0) + np.exp(1.0) + np.exp(0.0)))
    row2 = -np.log(np.exp(1.0) / (np.exp(1.0) + np.exp(3.0) + np.exp(-1.0)))
    assert losses.sampled_softmax_crossentropy(pos, neg, mask).numpy() == pytest.approx((row0 + row2) / 2, rel=1e-6)


def test_sampled_softmax_log_q_correction_and_accidental_hits():
    pos, neg = tf.constant([2.0]), tf.constant([[1.0, 0.0]])
    plain = losses.sampled_softmax_crossentropy(pos, neg).numpy()
    # Uniform sampling: a constant log q changes nothing.
    uniform = losses.sampled_softmax_crossentropy(pos, neg, positive_log_q=tf.constant([-3.0]),
                                                  negative_log_q=tf.constant([[-3.0, -3.0]])).numpy()
    assert uniform == pytest.approx(plain, rel=1e-6)
    # Popularity: logits become s - log q.
    log_q_pos, log_q_neg = np.log(0.5), np.log([0.25, 0.125])
    corrected = losses.sampled_softmax_crossentropy(
        pos, neg, positive_log_q=tf.constant([log_q_pos], tf.float32),
        negative_log_q=tf.constant([log_q_neg], tf.float32)).numpy()
    logits = np.array([2.0 - log_q_pos, 1.0 - log_q_neg[0], 0.0 - log_q_neg[1]])
    assert corrected == pytest.approx(-logits[0] + np.log(np.exp(logits).sum()), rel=1e-6)
    # A negative equal to the positive is removed from the softmax.
    hit = losses.sampled_softmax_crossentropy(pos, neg, negative_mask=tf.constant([[True, False]])).numpy()
    assert hit == pytest.approx(-np.log(np.exp(2.0) / (np.exp(2.0) + np.exp(1.0))), rel=1e-6)


def test_full_softmax_matches_hand_computation_and_ignores_the_padding_column():
    logits = np.array([[7.0, 1.0, 2.0, 0.5], [-3.0, 0.0, 0.0, 1.0]], np.float32)
    labels = np.array([2, 3])
    expected = np.mean([-np.log(np.exp(l[y]) / np.exp(l[1:]).sum()) for l, y in zip(logits, labels)])
    got = losses.full_softmax_crossentropy(tf.constant(logits), tf.constant(labels)).numpy()
    assert got == pytest.approx(expected, rel=1e-6)
    logits[:, 0] = 100.0
    assert losses.full_softmax_crossentropy(tf.constant(logits), tf.constant(labels)).numpy() == pytest.approx(
        expected, rel=1e-6)
    masked = losses.full_softmax_crossentropy(tf.constant(logits), tf.constant(labels), tf.constant([True, False]))
    assert masked.numpy() == pytest.approx(-np.log(np.exp(2.0) / np.exp(logits[0, 1:]).sum()), rel=1e-6)


def _retrieval_task():
    tfrs = sasrec_tf.import_tfrs()
    return tfrs.tasks.Retrieval(
        loss=keras.losses.CategoricalCrossentropy(from_logits=True, reduction=keras.losses.Reduction.SUM),
        remove_accidental_hits=True)


def test_inbatch_softmax_removes_accidental_hits_and_corrects_log_q():
    queries = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32)
    candidates = np.array([[2.0, 0.0], [0.0, 1.0], [2.0, 0.0]], np.float32)
    ids = np.array([5, 7, 5])  # rows 0 and 2 share their positive item: not each other's negative
    scores = queries @ candidates.T
    allowed = np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1]], bool)
    expected = np.mean([-scores[i, i] + np.log(np.exp(scores[i][allowed[i]]).sum()) for i in range(3)])
    got = losses.inbatch_softmax_crossentropy(tf.constant(queries), tf.constant(candidates),
                                              tf.constant(ids)).numpy()
    assert got == pytest.approx(expected, rel=1e-5)
    # Sampling-probability correction: logits of candidate j become s_ij - log p_j.
    p = np.array([0.5, 0.1, 0.5], np.float32)
    corrected = scores - np.log(p)[None, :]
    expected_q = np.mean([-corrected[i, i] + np.log(np.exp(corrected[i][allowed[i]]).sum()) for i in range(3)])
    got_q = losses.inbatch_softmax_crossentropy(tf.constant(queries), tf.constant(candidates),
                                                tf.constant(ids), tf.constant(p)).numpy()
    assert got_q == pytest.approx(expected_q, rel=1e-5)


@pytest.mark.parametrize("logq", [False, True])
def test_inbatch_softmax_equals_tfrs_retrieval_in_value_and_gradients(logq):
    # Many repeated items, as in real batches: the distinct-item form must give TFRS's numbers.
    rng = np.random.default_rng(3)
    table = tf.Variable(rng.normal(size=(9, 4)).astype(np.float32))
    queries = tf.Variable(rng.normal(size=(40, 4)).astype(np.float32))
    ids = tf.constant(rng.choice(np.arange(1, 9), size=40, p=[.4, .2, .1, .1, .08, .06, .04, .02]))
    q = tf.constant(rng.uniform(0.01, 0.5, size=9).astype(np.float32)) if logq else None

    def run(loss_fn):
        with tf.GradientTape() as tape:
            candidates = tf.gather(table, ids)
            probability = None if q is None else tf.gather(q, ids)
            loss = loss_fn(queries, candidates, probability)
        return loss.numpy(), [tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, [queries, table])]

    task = _retrieval_task()
    expected, expected_grads = run(lambda qs, cs, p: task(qs, cs, candidate_ids=ids, candidate_sampling_probability=p,
                                                          compute_metrics=False, compute_batch_metrics=False) / 40)
    got, got_grads = run(lambda qs, cs, p: losses.inbatch_softmax_crossentropy(qs, cs, ids, p))
    assert got == pytest.approx(expected, rel=1e-5)
    for g, e in zip(got_grads, expected_grads):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------------------ in the model
OBJECTIVES = [
    dict(loss="bce"),
    dict(loss="bce", num_negatives=4),
    dict(loss="gbce", num_negatives=4, gbce_t=0.75),
    dict(loss="bpr", num_negatives=4),
    dict(loss="sampled_softmax", num_negatives=4),
    dict(loss="sampled_softmax", num_negatives=4, negative_sampling="popularity", logq_correction=True),
    dict(loss="bce", num_negatives=2, negative_sampling="popularity"),
    dict(loss="inbatch_softmax"),
    dict(loss="inbatch_softmax", logq_correction=True),
    dict(loss="full_softmax"),
]


def objective_id(overrides):
    return ",".join(f"{k}={v}" for k, v in overrides.items())

make_model = functools.partial(small_sasrec, NUM_ITEMS, max_len=6, hidden_units=8, num_blocks=1, dropout_rate=0.0,
                               batch_size=4)


BATCH = {
    "item_ids": tf.constant([[0, 0, 0, 3, 4, 5], [0, 0, 0, 0, 7, 3]]),
    "positives": tf.constant([[0, 0, 0, 4, 5, 6], [0, 0, 0, 0, 3, 9]]),
}


def model_batch(k, fill=11):
    negatives = np.full((2, 6, k), fill, np.int32)
    negatives[:, :, -1] = 12
    return {**BATCH, "negatives": tf.constant(negatives)}


def real_positions(model, batch):
    hidden = model(batch["item_ids"], training=False).numpy()
    mask = batch["positives"].numpy() != 0
    emb = model.item_embeddings().numpy()
    return hidden[mask].astype(np.float64), batch["positives"].numpy()[mask], batch["negatives"].numpy()[mask], emb


def test_default_objective_is_the_papers_bce_unchanged_and_adds_no_state():
    model = make_model()
    assert model.target_counts is None
    assert len(model.weights) == len(make_model(loss="bce").weights)
    batch = model_batch(1)
    hidden = model(batch["item_ids"], training=False)
    pos = tf.reduce_sum(hidden * model._output_embedding(batch["positives"]), axis=-1)
    neg = model.score_items(hidden, batch["negatives"])
    expected = losses.sampled_binary_crossentropy(pos, neg, tf.not_equal(batch["positives"], 0))
    loss, _ = model._forward_loss(batch, training=False)
    assert loss.numpy() == expected.numpy()  # bit-identical: the paper's path runs unchanged


@pytest.mark.parametrize("loss_name", ["gbce", "sampled_softmax", "full_softmax", "inbatch_softmax"])
def test_model_objective_matches_numpy_on_real_positions(loss_name):
    k = 3
    model = make_model(loss=loss_name, num_negatives=k)
    batch = model_batch(k)
    queries, targets, negatives, emb = real_positions(model, batch)
    s_pos = np.einsum("md,md->m", queries, emb[targets])
    s_neg = np.einsum("md,mkd->mk", queries, emb[negatives])
    if loss_name == "gbce":
        beta = losses.gbce_beta(k, NUM_ITEMS, 0.75)
        expected = np.mean(-(beta * np.log(sigmoid(s_pos)) + np.log(1 - sigmoid(s_neg)).sum(-1)) / (k + 1))
    elif loss_name == "sampled_softmax":
        logits = np.concatenate([s_pos[:, None], s_neg], axis=1)
        expected = np.mean(np.log(np.exp(logits).sum(1)) - s_pos)
    elif loss_name == "full_softmax":
        logits = queries @ emb[1:].T  # items 1..N; the padding row takes no part
        expected = np.mean(np.log(np.exp(logits).sum(1)) - s_pos)
    else:  # in-batch: other positions' targets are the negatives; same-id candidates removed
        scores = queries @ emb[targets].T
        same = targets[:, None] == targets[None, :]
        allowed = ~same | np.eye(len(targets), dtype=bool)
        expected = np.mean([np.log(np.exp(scores[i][allowed[i]]).sum()) - scores[i, i] for i in range(len(targets))])
    loss, accuracy = model._forward_loss(batch, training=False)
    assert loss.numpy() == pytest.approx(expected, rel=1e-4)
    assert 0.0 <= accuracy.numpy() <= 1.0


@pytest.mark.parametrize("overrides", OBJECTIVES, ids=objective_id)
def test_loss_ignores_whatever_sits_at_padded_positions(overrides):
    model = make_model(**overrides)
    k = model.config.num_negatives
    batch = model_batch(k)
    loss, _ = model._forward_loss(batch, training=False)
    negatives = batch["negatives"].numpy().copy()
    negatives[batch["positives"].numpy() == 0] = 29
    other = {**batch, "negatives": tf.constant(negatives)}
    loss_other, _ = model._forward_loss(other, training=False)
    assert np.isfinite(loss.numpy())
    assert loss.numpy() == pytest.approx(loss_other.numpy(), rel=1e-6)


def test_popularity_negatives_follow_target_counts_and_never_pad():
    model = make_model(loss="sampled_softmax", num_negatives=50, negative_sampling="popularity")
    counts = np.zeros(NUM_ITEMS + 1)
    counts[7] = 10_000
    model.set_item_counts(counts)
    draws = model.item_frequency.sample_negatives(tf.constant([1, 2, 3, 4]), 50).numpy()
    assert draws.shape == (4, 50)
    assert draws.min() >= 1 and draws.max() <= NUM_ITEMS
    assert (draws == 7).mean() > 0.9  # 10001 / (10001 + 29) of the mass
    with pytest.raises(ValueError, match="shape"):
        model.set_item_counts(np.ones(3))
    with pytest.raises(ValueError, match="no item counts"):
        make_model().set_item_counts(counts)


def test_item_counts_are_counted_from_training_targets_when_not_given():
    model = make_model(loss="sampled_softmax", num_negatives=2, negative_sampling="popularity")
    sequences = [np.array([1, 2, 3]), np.array([4, 3])]
    data = training_dataset(sequences, NUM_ITEMS, 6, 4, num_negatives=2, shuffle=False)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(data, epochs=2, verbose=0)
    expected = np.ones(NUM_ITEMS + 1)  # add-one start
    for target in (2, 3, 3):  # targets of both sequences, per epoch
        expected[target] += 2
    np.testing.assert_array_equal(model.target_counts.numpy(), expected)


@pytest.mark.parametrize("overrides", OBJECTIVES, ids=objective_id)
def test_every_objective_trains_with_fit(overrides):
    config = SASRecConfig(**{"max_len": 8, "hidden_units": 16, "num_blocks": 1, "batch_size": 4, **overrides})
    keras.utils.set_random_seed(1)
    model = SASRec(config, num_items=NUM_ITEMS).build_weights()
    rng = np.random.default_rng(0)
    sequences = [rng.integers(1, NUM_ITEMS + 1, size=n) for n in (3, 5, 9, 12, 2, 7, 4, 6)]
    data = training_dataset(sequences, NUM_ITEMS, config.max_len, config.batch_size,
                            num_negatives=config.num_negatives)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = [w.numpy().copy() for w in model.trainable_weights]
    history = model.fit(data, epochs=3, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert any(not np.allclose(a, b.numpy()) for a, b in zip(before, model.trainable_weights))


@pytest.mark.parametrize("overrides", [dict(loss="inbatch_softmax", logq_correction=True),
                                       dict(loss="gbce", num_negatives=4, negative_sampling="popularity")],
                         ids=objective_id)
def test_models_with_other_objectives_save_and_reload(tmp_path, overrides):
    model = make_model(**overrides)
    batch = tf.constant([[0, 0, 3, 1, 4, 1]])
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    assert restored.config == model.config
    np.testing.assert_array_equal(restored(batch, training=False).numpy(), model(batch, training=False).numpy())


@pytest.mark.parametrize("bad", [
    dict(loss="softmax"), dict(gbce_t=1.5), dict(gbce_t=-0.1), dict(negative_sampling="zipf"),
    dict(loss="full_softmax", negative_sampling="popularity"), dict(loss="bce", logq_correction=True),
    dict(loss="sampled_softmax", logq_correction="yes"),
    dict(loss="sampled_softmax", num_negatives=4, logq_correction=True),  # uniform negatives: nothing to correct
], ids=objective_id)
def test_invalid_objective_settings_are_rejected(bad):
    with pytest.raises(ValueError, match="SASRecConfig"):
        SASRecConfig(**bad)


def test_contrastive_infonce_on_hand_computed_cases():
    views = tf.constant([[1.0, 0.0], [0.0, 1.0]])
    # Each view sees its partner (logit 1) and two others (logit 0); itself is never a candidate.
    assert losses.contrastive_infonce(views, views, tf.constant([5, 7])).numpy() == pytest.approx(
        np.log(2 + np.e) - 1, rel=1e-6)
    assert losses.contrastive_infonce(views, views, tf.constant([5, 7]), temperature=0.5).numpy() == pytest.approx(
        np.log(2 + np.e ** 2) - 2, rel=1e-6)
    # Same next item: the other sequence is no negative, so only the partner is left.
    assert losses.contrastive_infonce(views, views, tf.constant([5, 5])).numpy() == pytest.approx(0.0, abs=1e-6)
    # Label 0: that sequence takes no part, neither as a row nor as a negative.
    assert losses.contrastive_infonce(views, views, tf.constant([5, 0])).numpy() == pytest.approx(0.0, abs=1e-6)


def test_contrastive_infonce_matches_a_direct_computation():
    rng = np.random.default_rng(3)
    first, second = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    labels = np.array([3, 8, 3, 0, 9])
    views, both = np.concatenate([first, second]), np.concatenate([labels, labels])
    terms = []
    for i in range(10):
        if both[i] == 0:
            continue
        partner = (i + 5) % 10
        candidates = [j for j in range(10) if j == partner or (j != i and both[j] != 0 and both[j] != both[i])]
        logits = views[candidates] @ views[i] / 0.7
        terms.append(np.log(np.sum(np.exp(logits))) - views[partner] @ views[i] / 0.7)
    got = losses.contrastive_infonce(tf.constant(first, tf.float32), tf.constant(second, tf.float32),
                                     tf.constant(labels), temperature=0.7)
    assert got.numpy() == pytest.approx(np.mean(terms), rel=1e-5)


def _served_reference(queries, trained, tower, ids, probabilities=None, warm_weight=1.0):
    """served_inbatch_softmax_crossentropy by hand: per query, over the distinct items u, columns
    q·W_u + log c_u - log q_u and q·T_u + log c_u - log q_u, the own item's count not added; the
    cold term's label its own T column (own W column out), the warm term's its W column (own T out)."""
    distinct, first, counts = np.unique(ids, return_index=True, return_counts=True)
    total = 0.0
    for q, item in zip(queries, ids):
        own = int(np.flatnonzero(distinct == item)[0])
        shift = np.log(counts).astype(np.float64)
        shift[own] = 0.0
        if probabilities is not None:
            shift -= np.log(probabilities[first])
        w, t = trained[first] @ q + shift, tower[first] @ q + shift
        for weight, label, logits in ((1.0, len(distinct) + own, np.concatenate([np.delete(w, own), t])),
                                      (warm_weight, own, np.concatenate([w, np.delete(t, own)]))):
            position = label - 1 if label >= len(distinct) else label  # the deleted column shifts the tower half
            total += weight * (np.log(np.exp(logits - logits.max()).sum()) + logits.max() - logits[position])
    return total / len(ids)


def test_served_in_batch_softmax_scores_each_target_both_ways_against_both_kinds_by_hand():
    rng = np.random.default_rng(5)
    ids = np.array([4, 7, 4, 9, 2, 7, 7])
    index = {item: row for row, item in enumerate(sorted(set(ids)))}
    trained_rows, tower_rows = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    trained = trained_rows[[index[i] for i in ids]]
    tower = tower_rows[[index[i] for i in ids]]
    queries = rng.normal(size=(7, 3))
    probabilities = np.array([0.1, 0.3, 0.1, 0.2, 0.05, 0.3, 0.3])
    for q, weight in ((None, 1.0), (probabilities, 1.0), (probabilities, 3.0), (None, 0.0)):
        got = losses.served_inbatch_softmax_crossentropy(
            tf.constant(queries, tf.float32), tf.constant(trained, tf.float32), tf.constant(tower, tf.float32),
            tf.constant(ids), None if q is None else tf.constant(q, tf.float32), warm_weight=weight)
        np.testing.assert_allclose(got.numpy(), _served_reference(queries, trained, tower, ids, q, weight), rtol=1e-5)
