"""The roofline benchmark's FLOP count: hand-computed numbers for a tiny configuration, and the
traced training step's matmuls agreeing with it."""

import importlib.util
from pathlib import Path

import pytest

import sasrec_tf

REPO = Path(__file__).resolve().parents[1]


def _roofline():
    spec = importlib.util.spec_from_file_location("roofline_benchmark", REPO / "benchmarks" / "roofline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_forward_flops_of_a_tiny_configuration_by_hand():
    # B=2, T=3 (6 rows), d=4, one block, FFN 4 wide, one negative: per part, 2 FLOPs a multiply-add.
    parts = _roofline().forward_flops(batch=2, width=3, hidden_units=4, num_blocks=1, ffn_units=4, scored_items=2)
    assert parts == {
        "qkv projections": 3 * 2 * 6 * 4 * 4,  # 576: three [6, 4] x [4, 4]
        "output projection": 2 * 6 * 4 * 4,  # 192
        "attention scores": 2 * 2 * 3 * 3 * 4,  # 144: two [3, 4] x [4, 3]
        "attention weighted sum": 2 * 2 * 3 * 3 * 4,  # 144: two [3, 3] x [3, 4]
        "ffn": 2 * (2 * 6 * 4 * 4),  # 384: two [6, 4] x [4, 4]
        "logits": 2 * 6 * 4 * 2,  # 96: each row against the positive and one negative
    }
    assert sum(parts.values()) == 1536


def test_last_only_counts_one_query_row_in_the_last_block():
    parts = _roofline().forward_flops(batch=2, width=3, hidden_units=4, num_blocks=2, ffn_units=8,
                                      scored_items=11, last_only=True)
    # Block 0: every row (6); block 1: keys and values of 6 rows, queries of 2 (one per sequence).
    assert parts["qkv projections"] == (3 * 2 * 6 * 16) + (2 * 2 * 16 + 2 * 2 * 6 * 16)
    assert parts["attention scores"] == 2 * 6 * 3 * 4 + 2 * 2 * 3 * 4
    assert parts["ffn"] == 2 * 2 * 6 * 4 * 8 + 2 * 2 * 2 * 4 * 8
    assert parts["logits"] == 2 * 2 * 4 * 11  # the last position of each sequence against 11 items


def test_a_training_step_is_three_forward_passes_and_other_losses_are_refused():
    roofline = _roofline()
    config = sasrec_tf.SASRecConfig(batch_size=2, max_len=3, hidden_units=4, num_blocks=1)
    assert sum(roofline.training_step_flops(config).values()) == 3 * 1536
    with pytest.raises(ValueError, match="full_softmax"):
        roofline.training_step_flops(config.replace(loss="full_softmax"))
    with pytest.raises(ValueError, match="width"):
        roofline.forward_flops(batch=2, width=0, hidden_units=4, num_blocks=1)


@pytest.mark.parametrize("fused", [False, True])
def test_the_traced_training_step_holds_the_counted_matmuls(fused):
    import tensorflow as tf

    from sasrec_tf import training

    roofline = _roofline()
    config = sasrec_tf.SASRecConfig(batch_size=4, max_len=5, hidden_units=8, num_blocks=2, num_heads=2,
                                    fused_attention=fused)
    model = training.build_model(config, 30)
    batch = {"item_ids": tf.ones((4, 5), tf.int32), "positives": tf.ones((4, 5), tf.int32),
             "negatives": tf.ones((4, 5, 1), tf.int32)}
    graph = tf.function(model.train_step).get_concrete_function(batch).graph
    traced = sum(roofline.graph_matmul_flops(graph).values())
    counted = roofline.training_step_flops(config)
    # Every block's matmuls are in the graph; of the logits, the negatives' are an einsum and the
    # positives' an element-wise product and sum, which no matmul count sees.
    assert sum(counted.values()) - counted["logits"] < traced <= sum(counted.values())
    assert traced - (sum(counted.values()) - counted["logits"]) == counted["logits"] // 2
