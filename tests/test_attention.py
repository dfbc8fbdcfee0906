"""Attention maps (paper's Figure 4): averages by position are right, and the command writes PNG + npz."""

import functools

import numpy as np
import pytest
import tensorflow as tf

from sasrec_tf.attention import AttentionMaps, average_attention, plot_attention
from sasrec_tf.cli import main
from sasrec_tf.data.synthetic import generate_interactions
from sasrec_tf.testing.models import small_sasrec

NUM_ITEMS = 30

make_model = functools.partial(small_sasrec, NUM_ITEMS, max_len=6, hidden_units=8, num_blocks=2, num_heads=2,
                               dropout_rate=0.0)


def test_average_is_over_heads_and_users_with_real_items_at_both_positions():
    model = make_model()
    sequences = [np.array([3, 4, 5, 6, 7]), np.array([1, 2]), np.array([11, 12, 13])]
    maps = average_attention(model, sequences, batch_size=2)
    assert maps.weights.shape == (2, 6, 6) and maps.num_users == 3
    padded = np.array([[0, 3, 4, 5, 6, 7], [0, 0, 0, 0, 1, 2], [0, 0, 0, 11, 12, 13]])
    _, scores = model(tf.constant(padded), training=False, return_attention_scores=True)
    real = padded != 0
    both = real[:, :, None] & real[:, None, :]
    np.testing.assert_array_equal(maps.counts, both.sum(0))
    for layer in range(2):
        per_user = scores[layer].numpy().mean(axis=1)
        expected = (per_user * both).sum(0) / np.maximum(both.sum(0), 1)
        np.testing.assert_allclose(maps.weights[layer][both.sum(0) > 0], expected[both.sum(0) > 0], atol=1e-6)
    assert np.isnan(maps.weights[:, 0, :]).all() and np.isnan(maps.weights[:, :, 0]).all()  # nobody there
    assert maps.counts[5, 1] == 1 and maps.counts[5, 3] == 2 and maps.counts[5, 4] == 3
    # Causality: nothing attends to later positions; each row of the longest user sums to 1.
    assert np.nansum(np.triu(maps.weights[1], k=1)) == pytest.approx(0.0, abs=1e-7)
    np.testing.assert_allclose(scores[0].numpy()[0].sum(-1), 1.0, atol=1e-5)


def test_zero_block_models_have_nothing_to_plot():
    with pytest.raises(ValueError, match="no attention"):
        average_attention(make_model(num_blocks=0), [np.array([1, 2, 3])])


def test_plot_and_npz_round_trip(tmp_path):
    maps = average_attention(make_model(), [np.array([1, 2, 3, 4, 5]), np.array([6, 7])])
    png = plot_attention(maps, tmp_path / "a.png", last=4)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = AttentionMaps.load(maps.save(tmp_path / "a.npz"))
    np.testing.assert_array_equal(again.weights, maps.weights)
    np.testing.assert_array_equal(again.counts, maps.counts)


def test_attention_plot_command_end_to_end_on_a_trained_model(tmp_path, capsys):
    log = tmp_path / "log.csv"
    generate_interactions(num_users=100, num_items=160, mean_length=8, seed=2).to_csv(log, index=False)
    model_dir = tmp_path / "model"
    assert main(["train", "--data", str(log), "--format", "csv", "--out", str(model_dir), "--epochs", "1",
                 "--max-len", "8", "--hidden-units", "8", "--eval-every", "1"]) == 0
    png = tmp_path / "plots" / "attention.png"
    assert main(["attention-plot", "--model", str(model_dir), "--data", str(log), "--format", "csv",
                 "--out", str(png), "--max-users", "50"]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    maps = AttentionMaps.load(png.with_suffix(".npz"))
    assert maps.weights.shape == (2, 8, 8) and maps.num_users == 50
    assert np.nanmax(maps.weights) <= 1.0 + 1e-6 and np.nanmin(maps.weights) >= 0.0
    assert "attention.png" in capsys.readouterr().out


def test_the_colour_scale_is_set_by_the_informative_cells_not_the_trivial_corner():
    from sasrec_tf.attention import colour_scale_max

    size = 12
    weights = np.tril(np.full((size, size), 0.08))[None]  # [1 layer, T, T]: causal, uniform-ish
    weights[0, 0, 0] = 1.0  # position 0 attends only to itself
    weights[0, 5, 5] = 0.3  # one strong cell among many
    assert colour_scale_max(weights) == pytest.approx(0.08)
    assert colour_scale_max(weights[:, 1:, 1:], offset=1) == pytest.approx(0.08)  # cropped: same rule
    assert colour_scale_max(np.full((1, 3, 3), np.nan)) == 1.0  # nothing to scale by
