"""SASRec model behaviour users rely on: causality, padding, ablations, loss masking, save/load."""

import functools
import itertools

import numpy as np
import pytest
import tensorflow as tf

import sasrec_tf
from sasrec_tf import SASRec, SASRecConfig
from sasrec_tf._compat import keras
from sasrec_tf.data import training_dataset
from sasrec_tf.losses import sampled_binary_crossentropy
from sasrec_tf.testing.models import small_sasrec

NUM_ITEMS = 40

make_model = functools.partial(small_sasrec, NUM_ITEMS, num_users=5, max_len=12, hidden_units=16, num_blocks=2,
                               num_heads=2, dropout_rate=0.0)


def call(model, item_ids, user_ids=None):
    item_ids = tf.constant(item_ids, tf.int32)
    if model.uses_user_embedding:
        user_ids = tf.ones((item_ids.shape[0],), tf.int32) if user_ids is None else user_ids
        return model({"item_ids": item_ids, "user_ids": user_ids}, training=False).numpy()
    return model(item_ids, training=False).numpy()


ARCHITECTURES = [
    dict(layer_norm="original"),
    dict(layer_norm="pre"),
    dict(layer_norm="post"),
    dict(layer_norm="ligr", ffn_units=32, ffn_activation="gelu"),
    dict(use_positional_embedding=False),
    dict(use_residual=False),
    dict(num_blocks=0),
    dict(num_heads=1, num_blocks=3),
    dict(use_user_embedding=True),
    dict(ffn_units=64, ffn_activation="gelu"),
    dict(scale_item_embedding=False, embedding_initializer="xavier_normal"),
    dict(frequency_mixing=0.7, frequency_cutoff=5, layer_norm="post"),  # BSARec's Beauty setting
    dict(frequency_mixing=0.5, frequency_cutoff=3),
    dict(fused_attention=False),  # the paper's blocks through MultiHeadAttention's own call
    dict(fused_attention=False, layer_norm="pre", frequency_mixing=0.5),
    dict(layer_norm="pre", frequency_mixing=0.5),  # fused (the default): one QKV matmul
]


@pytest.mark.parametrize("overrides", ARCHITECTURES, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_output_at_position_t_ignores_items_after_t(overrides):
    model = make_model(**overrides)
    rng = np.random.default_rng(1)
    base = np.array([[0, 0, 0] + list(rng.integers(1, NUM_ITEMS + 1, size=9))])
    reference = call(model, base)
    for t in range(3, 11):
        changed = base.copy()
        changed[0, t + 1:] = rng.integers(1, NUM_ITEMS + 1, size=11 - t)
        out = call(model, changed)
        np.testing.assert_allclose(out[0, : t + 1], reference[0, : t + 1], atol=1e-5)
        assert not np.allclose(out[0, t + 1:], reference[0, t + 1:], atol=1e-5)


@pytest.mark.parametrize("overrides", ARCHITECTURES, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_real_positions_do_not_depend_on_leading_padding(overrides):
    model = make_model(**overrides)
    items = [5, 9, 1, 33, 7]
    padded_full = [[0] * 7 + items]
    padded_short = [[0] * 2 + items]
    unpadded = [items]
    full = call(model, padded_full)[0, 7:]
    np.testing.assert_allclose(call(model, padded_short)[0, 2:], full, atol=1e-5)
    np.testing.assert_allclose(call(model, unpadded)[0], full, atol=1e-5)
    np.testing.assert_array_equal(call(model, padded_full)[0, :7], 0.0)


def test_padding_embedding_row_never_influences_outputs():
    model = make_model()
    batch = [[0, 0, 0, 0, 0, 0, 0, 4, 8, 15, 16, 23]]
    before = call(model, batch)
    table = model.item_embedding.embeddings
    table.assign(tf.tensor_scatter_nd_update(table, [[0]], tf.fill((1, table.shape[1]), 1e3)))
    np.testing.assert_allclose(call(model, batch), before, atol=1e-5)


def test_training_mode_dropout_changes_outputs_but_inference_is_deterministic():
    model = make_model(dropout_rate=0.5)
    batch = tf.constant([[0, 0, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]])
    assert not np.allclose(model(batch, training=True).numpy(), model(batch, training=True).numpy())
    np.testing.assert_array_equal(model(batch, training=False).numpy(), model(batch, training=False).numpy())


def test_scores_are_dot_products_with_the_shared_item_embedding():
    model = make_model()
    batch = tf.constant([[0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5]])
    query = model.query_embeddings(batch).numpy()
    candidates = tf.constant([[7, 11, 2]])
    expected = query @ model.item_embedding.embeddings.numpy()[[7, 11, 2]].T
    np.testing.assert_allclose(model.score_items(query, candidates).numpy(), expected, rtol=1e-5)
    assert model.item_embeddings() is model.item_embedding.embeddings


def test_unshared_item_embedding_scores_with_a_separate_table():
    model = make_model(share_item_embedding=False)
    assert model.item_embeddings() is model.output_item_embedding.embeddings
    assert model.item_embeddings() is not model.item_embedding.embeddings


def test_sampled_bce_matches_hand_computation_and_ignores_padded_positions():
    pos = tf.constant([[0.0, 2.0, -1.0]])
    neg = tf.constant([[[5.0], [0.5], [1.0]]])
    mask = tf.constant([[False, True, True]])
    sigmoid = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    expected = np.mean([-np.log(sigmoid(2.0)) - np.log(1 - sigmoid(0.5)),
                        -np.log(sigmoid(-1.0)) - np.log(1 - sigmoid(1.0))])
    assert sampled_binary_crossentropy(pos, neg, mask).numpy() == pytest.approx(expected, rel=1e-6)
    changed = tf.constant([[[-50.0], [0.5], [1.0]]])
    assert sampled_binary_crossentropy(pos, changed, mask).numpy() == pytest.approx(expected, rel=1e-6)


def test_model_loss_ignores_whatever_sits_at_padded_positions():
    model = make_model()
    batch = {
        "item_ids": tf.constant([[0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]]),
        "positives": tf.constant([[0, 0, 0, 0, 0, 0, 0, 0, 2, 3, 4, 5]]),
        "negatives": tf.constant([[[9]] * 12]),
    }
    loss, _ = model._forward_loss(batch, training=False)
    other = dict(batch, negatives=tf.constant([[[30]] * 8 + [[9]] * 4]))
    loss_other, _ = model._forward_loss(other, training=False)
    assert loss.numpy() == pytest.approx(loss_other.numpy(), rel=1e-6)


ABLATIONS = ARCHITECTURES + [
    dict(share_item_embedding=False),
    dict(dropout_rate=0.0),
    dict(num_blocks=1),
    dict(num_heads=4, hidden_units=16),
    dict(l2_emb=1e-3),
    dict(num_negatives=3),
    dict(item_dropout_rate=0.2, loss="sampled_softmax", num_negatives=3),
    dict(item_dropout_rate=0.2, share_item_embedding=False, loss="full_softmax"),
    dict(embedding_initializer="glorot_uniform"),
    dict(contrastive_weight=0.1, contrastive_temperature=0.5, dropout_rate=0.2),
]


@pytest.mark.parametrize("overrides", ABLATIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_every_ablation_builds_and_trains_with_fit(overrides):
    config = SASRecConfig(**{"max_len": 8, "hidden_units": 16, "num_blocks": 1, "batch_size": 4, **overrides})
    model = SASRec(config, num_items=NUM_ITEMS, num_users=6 if config.use_user_embedding else 0)
    rng = np.random.default_rng(0)
    sequences = [rng.integers(1, NUM_ITEMS + 1, size=n) for n in (3, 5, 9, 12, 2, 7)]
    data = training_dataset(sequences, NUM_ITEMS, config.max_len, config.batch_size,
                            num_negatives=config.num_negatives)
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate))
    before = [w.numpy().copy() for w in model.trainable_weights] if model.built else None
    history = model.fit(data, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert before is None or any(not np.allclose(a, b.numpy()) for a, b in zip(before, model.trainable_weights))
    if config.l2_emb:
        assert model.losses, "L2 on embeddings must add a regularisation loss"


def test_item_dropout_drops_the_table_once_per_step_for_inputs_and_outputs_alike():
    model = make_model(item_dropout_rate=0.5)
    table = model.item_embedding.embeddings.numpy()
    ids = tf.constant([[3, 7, 3], [12, 7, 40]])
    with model._item_table_dropout(training=True):
        dropped = model.item_embeddings().numpy()
        inputs = model._lookup(model.item_embedding, ids).numpy()
        outputs = model._output_embedding(ids).numpy()
    # Inverted dropout: every entry is 0 or twice the weight, about half of them dropped.
    np.testing.assert_allclose(np.where(dropped == 0, 0.0, dropped / 2), np.where(dropped == 0, 0.0, table), rtol=1e-6)
    assert 0.4 < np.mean(dropped == 0) < 0.6
    # One mask per step: the same item reads the same dropped row wherever it is looked up.
    np.testing.assert_array_equal(inputs, dropped[ids.numpy()])
    np.testing.assert_array_equal(outputs, inputs)
    np.testing.assert_array_equal(inputs[0, 0], inputs[0, 2])
    with model._item_table_dropout(training=True):
        assert not np.array_equal(model.item_embeddings().numpy(), dropped)  # a fresh mask next step
    with model._item_table_dropout(training=False):  # evaluation reads the weights themselves
        assert model.item_embeddings() is model.item_embedding.embeddings
    assert model.item_embeddings() is model.item_embedding.embeddings


def test_item_dropout_applies_to_training_losses_only():
    batch = {"item_ids": tf.constant([[0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]]),
             "positives": tf.constant([[0, 0, 0, 0, 0, 0, 0, 0, 2, 3, 4, 5]]),
             "negatives": tf.constant([[[9, 17]] * 12])}
    plain, dropped = make_model(loss="sampled_softmax", num_negatives=2), make_model(
        loss="sampled_softmax", num_negatives=2, item_dropout_rate=0.3)
    assert plain._forward_loss(batch, training=False)[0].numpy() == pytest.approx(
        dropped._forward_loss(batch, training=False)[0].numpy(), rel=1e-6)
    assert dropped._forward_loss(batch, training=True)[0].numpy() != pytest.approx(
        plain._forward_loss(batch, training=True)[0].numpy(), rel=1e-3)


def test_contrastive_term_is_added_to_training_losses_only():
    batch = {"item_ids": tf.constant([[0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [0, 0, 0, 0, 0, 0, 0, 0, 11, 12, 13, 14]]),
             "positives": tf.constant([[0, 0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], [0, 0, 0, 0, 0, 0, 0, 0, 12, 13, 14, 15]]),
             "negatives": tf.constant([[[30]] * 12] * 2)}
    plain, contrastive = make_model(), make_model(contrastive_weight=0.5)
    assert plain._forward_loss(batch, training=False)[0].numpy() == pytest.approx(
        contrastive._forward_loss(batch, training=False)[0].numpy(), rel=1e-6)
    # Without dropout the two views are equal: the term is 0.5 x InfoNCE of the last representations.
    last = contrastive(batch["item_ids"], training=False)[:, -1]
    expected = plain._forward_loss(batch, training=True)[0] + 0.5 * sasrec_tf.losses.contrastive_infonce(
        last, last, batch["positives"][:, -1])
    assert contrastive._forward_loss(batch, training=True)[0].numpy() == pytest.approx(expected.numpy(), rel=1e-5)


def test_ligr_block_with_open_gates_is_the_pre_ln_block_and_with_closed_gates_the_identity():
    from sasrec_tf.layers import CausalSelfAttentionBlock, causal_attention_mask

    inputs = tf.constant(np.random.default_rng(2).normal(size=(2, 5, 8)), tf.float32)
    padding = tf.constant([[False, True, True, True, True], [True] * 5])
    mask = causal_attention_mask(padding)
    pre, ligr = CausalSelfAttentionBlock(8, 2, layer_norm="pre"), CausalSelfAttentionBlock(8, 2, layer_norm="ligr")
    expected = pre(inputs, mask, padding).numpy()
    ligr(inputs, mask, padding)
    shared = {w.name.split("/", 1)[1]: w for w in pre.weights}
    for weight in ligr.weights:
        name = weight.name.split("/", 1)[1]
        if "gate" not in name:
            weight.assign(shared[name])
    for gate in (ligr.attention_gate, ligr.feed_forward_gate):
        gate.kernel.assign(tf.zeros_like(gate.kernel))
        gate.bias.assign(tf.fill(gate.bias.shape, 50.0))  # sigmoid(50) = 1
    np.testing.assert_allclose(ligr(inputs, mask, padding).numpy(), expected, atol=1e-5)
    for gate in (ligr.attention_gate, ligr.feed_forward_gate):
        gate.bias.assign(tf.fill(gate.bias.shape, -50.0))  # closed: the block passes its input on
    np.testing.assert_allclose(ligr(inputs, mask, padding).numpy(),
                               inputs.numpy() * padding.numpy()[..., None], atol=1e-5)


def test_frequency_filter_hand_computed_dc_only_kernel_is_a_running_mean_of_the_window():
    from sasrec_tf.layers import CausalFrequencyFilter

    # cutoff 1 keeps only frequency 0: the low part at the end of a 4-wide window is its mean.
    layer = CausalFrequencyFilter(max_len=4, cutoff=1)
    inputs = tf.constant([[[0.0], [2.0], [4.0], [6.0]]])  # one padded position, then 2, 4, 6
    layer(inputs)
    layer.sqrt_beta.assign([0.0])  # beta = 0: the low part alone
    np.testing.assert_allclose(layer(inputs).numpy()[0, :, 0], [0.0, 0.5, 1.5, 3.0], atol=1e-6)
    layer.sqrt_beta.assign([0.5])  # low + 0.25 * (x - low)
    np.testing.assert_allclose(layer(inputs).numpy()[0, :, 0], [0.0, 0.875, 2.125, 3.75], atol=1e-6)
    np.testing.assert_allclose(layer(inputs, last_only=True).numpy()[0, :, 0], [3.75], atol=1e-6)
    layer.sqrt_beta.assign([1.0])  # beta = 1: the identity
    np.testing.assert_allclose(layer(inputs).numpy(), inputs.numpy(), atol=1e-6)


def test_frequency_filter_at_the_last_position_is_bsarecs_whole_window_rfft_filter():
    from sasrec_tf.layers import CausalFrequencyFilter

    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 50, 6))
    x[0, :41] = 0.0  # a short history, zero-padded as BSARec pads
    layer = CausalFrequencyFilter(max_len=50, cutoff=5)
    layer(tf.constant(x, tf.float32))
    beta = rng.normal(size=6)
    layer.sqrt_beta.assign(beta)
    def bsarec(window):  # BSARec's FrequencyLayer on [B, 50, d]: rfft (ortho), keep the 3 = 5 // 2 + 1 lowest
        spectrum = np.fft.rfft(window, axis=1, norm="ortho")
        spectrum[:, 3:] = 0
        low = np.fft.irfft(spectrum, n=50, axis=1, norm="ortho")
        return low + beta ** 2 * (window - low)

    got = layer(tf.constant(x, tf.float32)).numpy()
    np.testing.assert_allclose(got[:, -1], bsarec(x)[:, -1], atol=1e-4)
    # Every other position gets the same filter of the window that ends there (zero before it).
    window_to_29 = np.concatenate([np.zeros((3, 20, 6)), x[:, :30]], axis=1)
    np.testing.assert_allclose(got[:, 29], bsarec(window_to_29)[:, -1], atol=1e-4)


def test_frequency_mixing_block_mixes_filter_and_attention_before_the_residual():
    from sasrec_tf.layers import CausalSelfAttentionBlock, causal_attention_mask

    inputs = tf.constant(np.random.default_rng(3).normal(size=(2, 5, 8)), tf.float32)
    padding = tf.constant([[False, True, True, True, True], [True] * 5])
    mask = causal_attention_mask(padding)
    block = CausalSelfAttentionBlock(8, 2, layer_norm="post", frequency_mixing=0.6, frequency_cutoff=3, max_len=5)
    got = block(inputs, mask, padding).numpy()
    real = tf.cast(padding, tf.float32)[..., None]
    attended = block.attention(inputs, inputs, attention_mask=mask)
    filtered = block.frequency_filter(inputs * real)
    hidden = block.attention_norm(inputs + 0.6 * filtered + 0.4 * attended)
    expected = block.feed_forward_norm(hidden + block.feed_forward(hidden)) * real
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-5)


def test_unscaled_input_embedding_equals_the_scaled_one_of_a_table_times_sqrt_d():
    scaled, unscaled = make_model(), make_model(scale_item_embedding=False)
    unscaled.set_weights(scaled.get_weights())
    batch = [[0, 0, 0, 0, 0, 0, 3, 1, 4, 1, 5, 9]]
    assert not np.allclose(call(scaled, batch), call(unscaled, batch), atol=1e-4)
    table = unscaled.item_embedding.embeddings
    table.assign(table * np.sqrt(16))
    np.testing.assert_allclose(call(unscaled, batch), call(scaled, batch), atol=1e-4)


@pytest.mark.parametrize("name, std", [("uniform", 0.1 / np.sqrt(12)), ("glorot_uniform", np.sqrt(2 / 2017)),
                                       ("xavier_normal", np.sqrt(2 / 2017))])
def test_item_embedding_initializers_have_their_documented_spread(name, std):
    keras.utils.set_random_seed(0)
    model = SASRec(SASRecConfig(hidden_units=16, max_len=4, embedding_initializer=name), num_items=2000).build_weights()
    assert np.std(model.item_embedding.embeddings.numpy()) == pytest.approx(std, rel=0.03)


def test_save_and_reload_gives_identical_predictions(tmp_path):
    model = make_model(layer_norm="pre", share_item_embedding=False, ffn_units=48, ffn_activation="gelu")
    batch = tf.constant([[0, 0, 0, 0, 0, 3, 1, 4, 1, 5, 9, 2]])
    expected = model(batch, training=False).numpy()
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    assert isinstance(restored, SASRec)
    assert restored.config == model.config
    np.testing.assert_array_equal(restored(batch, training=False).numpy(), expected)


def test_weights_checkpoint_round_trip(tmp_path):
    model = make_model()
    batch = tf.constant([[0, 0, 0, 0, 0, 3, 1, 4, 1, 5, 9, 2]])
    model.save_weights(str(tmp_path / "ckpt"))
    fresh = SASRec(model.config, num_items=NUM_ITEMS).build_weights()
    fresh.load_weights(str(tmp_path / "ckpt"))
    np.testing.assert_array_equal(fresh(batch, training=False).numpy(), model(batch, training=False).numpy())


def test_config_json_round_trip_and_unknown_keys_rejected(tmp_path):
    config = SASRecConfig(max_len=200, dropout_rate=0.2, layer_norm="pre")
    assert SASRecConfig.from_json(config.to_json(tmp_path / "c.json")) == config
    assert SASRecConfig.from_json(config.to_json()) == config
    with pytest.raises(ValueError, match="hiden_units"):
        SASRecConfig.from_dict({"hiden_units": 64})


@pytest.mark.parametrize("bad", [dict(hidden_units=50, num_heads=3), dict(layer_norm="middle"),
                                 dict(dropout_rate=1.0), dict(num_blocks=-1), dict(max_len=0),
                                 dict(ffn_units=0), dict(ffn_units=True), dict(ffn_activation="swish"),
                                 dict(frequency_mixing=1.5), dict(frequency_cutoff=0)])
def test_invalid_config_is_rejected_with_the_field_named(bad):
    with pytest.raises(ValueError):
        SASRecConfig(**bad)


def test_model_rejects_float_inputs_and_missing_user_ids():
    model = make_model()
    with pytest.raises(TypeError, match="integer"):
        model(tf.zeros((1, 12), tf.float32))
    user_model = make_model(use_user_embedding=True)
    with pytest.raises(ValueError, match="user"):
        user_model(tf.ones((1, 12), tf.int32))


def test_layers_are_serializable_with_complete_configs():
    for layer in [sasrec_tf.layers.PositionalEmbedding(7),
                  sasrec_tf.layers.CausalSelfAttentionBlock(16, num_heads=2, dropout_rate=0.1, layer_norm="post"),
                  sasrec_tf.layers.SASRecEncoder(7, 16, num_blocks=3, use_positional_embedding=False),
                  sasrec_tf.layers.SASRecEncoder(7, 16, num_blocks=1, ffn_units=64, ffn_activation="gelu"),
                  sasrec_tf.layers.SASRecEncoder(7, 16, num_blocks=2, frequency_mixing=0.7, frequency_cutoff=3),
                  sasrec_tf.layers.CausalFrequencyFilter(7, cutoff=3)]:
        clone = type(layer).from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()
        assert keras.saving.get_registered_object(
            keras.saving.get_registered_name(type(layer))) is type(layer)


def test_feed_forward_width_and_activation_are_configurable():
    paper = make_model()
    wide = make_model(ffn_units=64, ffn_activation="gelu")
    paper_ffn = paper.encoder.blocks[0].feed_forward
    wide_ffn = wide.encoder.blocks[0].feed_forward
    assert paper_ffn.inner.kernel.shape == (paper.config.hidden_units, paper.config.hidden_units)
    assert wide_ffn.inner.kernel.shape == (wide.config.hidden_units, 64)
    assert wide_ffn.outer.kernel.shape == (64, wide.config.hidden_units)
    x = tf.constant([[-1.0, 0.5]])
    np.testing.assert_allclose(wide_ffn.activation(x), tf.nn.gelu(x), atol=1e-6)
    np.testing.assert_allclose(paper_ffn.activation(x), tf.nn.relu(x))


@pytest.mark.parametrize("overrides", ARCHITECTURES, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_query_embeddings_compute_only_the_last_position_with_the_same_result(overrides):
    model = make_model(**overrides)
    batch = np.array([[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7],
                      [0, 0, 0, 0, 0, 3, 1, 4, 1, 5, 9, 2],
                      [6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8]])
    user_ids = tf.constant([1, 2, 3], tf.int32) if model.uses_user_embedding else None
    full = call(model, batch, user_ids)[:, -1, :]
    queries = model.query_embeddings(tf.constant(batch, tf.int32), user_ids).numpy()
    assert queries.shape == full.shape
    np.testing.assert_allclose(queries, full, atol=1e-5)
    with pytest.raises(ValueError, match="last_only"):
        model.encoder(tf.zeros((1, 12, 16)), tf.ones((1, 12), tf.bool), return_attention_scores=True, last_only=True)


def test_a_target_position_weighs_the_same_in_a_batch_of_short_histories_as_in_one_of_long_ones():
    # Length bucketing puts short histories together; averaging each batch over its own positions
    # would give each of their positions 10x the weight of one in the long batch below.
    model = make_model()
    rng = np.random.default_rng(0)
    long_ids = rng.integers(1, NUM_ITEMS + 1, size=(2, 11))
    short_ids = np.zeros((2, 11), np.int64)
    short_ids[:, -2:] = rng.integers(1, NUM_ITEMS + 1, size=(2, 2))

    def batch(ids):
        ids = tf.constant(ids, tf.int32)
        return {"item_ids": ids[:, :-1], "positives": ids[:, 1:],
                "negatives": tf.fill(tf.concat([tf.shape(ids[:, 1:]), [1]], 0), 7),
                "expected_targets": tf.fill([ids.shape[0]], 5.5)}  # (10 + 10 + 1 + 1) / 4 windows

    def summed_position_losses(b):
        hidden = model(b["item_ids"], training=False)
        positive = tf.reduce_sum(hidden * model.item_embedding(b["positives"]), -1)
        negative = model.score_items(hidden, b["negatives"])[..., 0]
        per_position = tf.nn.softplus(-positive) + tf.nn.softplus(negative)
        return float(tf.reduce_sum(tf.where(b["positives"] != 0, per_position, 0.0)))

    long_batch, short_batch = batch(long_ids), batch(short_ids)
    both = batch(np.concatenate([long_ids, short_ids]))
    for b in (long_batch, short_batch, both):
        loss, _ = model._forward_loss(b, training=False)
        assert float(loss) == pytest.approx(summed_position_losses(b) / float(tf.reduce_sum(b["expected_targets"])),
                                            rel=1e-5)
    # Two half batches cut by length carry the same total weight as the one mixed batch.
    halves = sum(float(model._forward_loss(b, training=False)[0]) for b in (long_batch, short_batch))
    assert halves == pytest.approx(2 * float(model._forward_loss(both, training=False)[0]), rel=1e-5)
