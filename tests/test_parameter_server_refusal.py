"""A model the parameter-server partitioner would cut wrongly is refused before it is built.

``ParameterServerStrategy`` tells the partitioner only a variable's shape, so a weight with the item
table's shape would be sharded too (and its layer would fail on a ``ShardedVariable``). No cluster:
the check runs before the strategy's scope is entered.
"""

from __future__ import annotations

import contextlib
import types

import pytest

from sasrec_tf import SASRecConfig, parameter_server, training


def _config(**overrides) -> SASRecConfig:
    return SASRecConfig(hidden_units=8, num_blocks=1, num_heads=1, max_len=10, **overrides)


def test_positional_table_with_the_item_tables_shape_is_refused_naming_max_len():
    # 9 items: the item table is [10, 8], and so is the positional table of max_len 10.
    with pytest.raises(ValueError, match=r"encoder/positional_embedding/embeddings .*item table's shape \[10, 8\]"
                                         r".*change max_len"):
        parameter_server.check_table_shapes(_config(), num_items=9)


def test_feed_forward_kernel_with_the_item_tables_shape_is_refused_naming_hidden_units():
    # 7 items: [8, 8], the shape of the feed-forward kernels at d = 8.
    with pytest.raises(ValueError, match=r"feed_forward/inner/kernel .*change hidden_units or ffn_units"):
        parameter_server.check_table_shapes(_config(), num_items=7)


def test_user_table_clash_is_named_and_the_message_is_one_line():
    config = _config(use_user_embedding=True)
    with pytest.raises(ValueError, match=r"user table's shape \[10, 8\]") as raised:
        parameter_server.check_table_shapes(config, num_items=50, num_users=9)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("share", [True, False])
def test_tables_themselves_and_a_user_table_of_the_same_shape_pass(share):
    # Both item tables (shared or not) and a user table with as many rows are tables: no clash.
    config = _config(share_item_embedding=share, use_user_embedding=True)
    parameter_server.check_table_shapes(config, num_items=20, num_users=20)
    parameter_server.check_table_shapes(_config(), num_items=10)  # [11, 8] vs the positional [10, 8]


def test_build_model_refuses_before_entering_the_strategys_scope():
    entered = []

    @contextlib.contextmanager
    def scope():
        entered.append(True)
        yield

    partitioner = parameter_server.TablePartitioner(2)
    strategy = types.SimpleNamespace(scope=scope, extended=types.SimpleNamespace(_variable_partitioner=partitioner))
    with pytest.raises(ValueError, match="change max_len"):
        training.build_model(_config(), 9, strategy=strategy)
    assert not entered  # nothing was created on the cluster
