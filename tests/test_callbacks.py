"""RankingMetricsCallback: metrics reach History, EarlyStopping and TensorBoard through the logs."""

import glob
import math
import os

import numpy as np
import pytest
import tensorflow as tf

from sasrec_tf._compat import keras
from sasrec_tf.callbacks import RankingMetricsCallback

NUM_ITEMS = 12
HISTORY_ITEM = 12  # the user's only history item; always scores 0
TARGET = 1


def scores_with_rank(rank: int) -> np.ndarray:
    """Item scores (row 0 = padding) under which the target ranks ``rank`` among items 1..11."""
    scores = np.zeros(NUM_ITEMS + 1, np.float32)
    scores[TARGET] = 0.5
    scores[2 : 2 + rank - 1] = 1.0
    return scores


class ScriptedModel(keras.Model):
    """Each training step moves the item scores to the next row of ``schedule``.

    So after epoch ``e`` (one step per epoch) the target's rank is the scripted one, and the item
    scores are a weight that ``EarlyStopping(restore_best_weights=True)`` can restore.
    """

    def __init__(self, ranks_per_epoch):
        super().__init__()
        schedule = np.stack([scores_with_rank(1)] + [scores_with_rank(r) for r in ranks_per_epoch])
        self.schedule = tf.constant(schedule)
        self.max_len = 3
        self.num_items = NUM_ITEMS
        self.uses_user_embedding = False
        self.script_step = self.add_weight(
            name="script_step", shape=(), dtype="int32", initializer="zeros", trainable=False
        )
        self.item_scores = self.add_weight(
            name="item_scores", shape=(NUM_ITEMS + 1,), initializer="zeros", trainable=False
        )

    def train_step(self, data):
        self.script_step.assign_add(1)
        self.item_scores.assign(tf.gather(self.schedule, self.script_step))
        return {"loss": tf.cast(self.script_step, tf.float32)}

    def item_embeddings(self):
        return self.item_scores[:, None]

    def query_embeddings(self, item_ids, user_ids=None):
        return tf.ones([tf.shape(item_ids)[0], 1])


def ndcg(rank: int) -> float:
    return 1 / math.log2(rank + 1) if rank <= 10 else 0.0


def fit(model, epochs, callbacks):
    model.compile()
    return model.fit(np.zeros((1, 1)), np.zeros((1, 1)), batch_size=1, epochs=epochs, verbose=0, callbacks=callbacks)


def ranking_callback(**kwargs):
    kwargs.setdefault("verbose", 0)
    return RankingMetricsCallback([np.array([HISTORY_ITEM])], np.array([TARGET]), **kwargs)


def test_metrics_are_written_into_history_every_epoch():
    ranks = [3, 1, 5]
    history = fit(ScriptedModel(ranks), 3, [ranking_callback(ks=(1, 10))])

    assert history.history["val_ndcg@10"] == pytest.approx([ndcg(r) for r in ranks])
    assert history.history["val_hr@1"] == [0.0, 1.0, 0.0]
    assert history.history["val_mrr"] == pytest.approx([1 / r for r in ranks])


def test_early_stopping_after_the_callback_monitors_ndcg_and_restores_best_weights():
    ranks = [3, 1, 5, 8, 11, 2]
    model = ScriptedModel(ranks)
    early_stopping = keras.callbacks.EarlyStopping(
        monitor="val_ndcg@10", mode="max", patience=2, restore_best_weights=True
    )
    history = fit(model, len(ranks), [ranking_callback(), early_stopping])

    assert len(history.history["val_ndcg@10"]) == 4  # best at epoch 2, then two worse epochs
    assert early_stopping.stopped_epoch == 3
    np.testing.assert_array_equal(model.item_scores.numpy(), scores_with_rank(1))  # epoch 2's weights


def test_epochs_that_did_not_validate_log_nothing_and_history_holds_nan_there(capsys):
    # Was: the last values were carried forward into the skipped epochs (issue 25: a flat line
    # drawn where nothing was measured).
    ranks = [3, 1, 5, 8, 11]
    seen = []
    spy = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(sorted(logs)))
    callback = ranking_callback(every_n_epochs=2, verbose=1)
    history = fit(ScriptedModel(ranks), 5, [callback, spy])

    # Computed after the first epoch, epochs 2 and 4, and the last (5); nothing at epoch 3.
    assert callback.validated_epochs == history.validated_epochs == [0, 1, 3, 4]
    assert seen[2] == ["loss"]
    assert all("val_ndcg@10" in keys for i, keys in enumerate(seen) if i != 2)
    values = history.history["val_ndcg@10"]
    assert len(values) == len(history.history["loss"]) == 5
    assert math.isnan(values[2])
    assert [values[i] for i in (0, 1, 3, 4)] == pytest.approx([ndcg(3), ndcg(1), ndcg(8), ndcg(11)])
    printed = [line for line in capsys.readouterr().out.splitlines() if "val_ndcg@10" in line]
    assert [line.split(":")[0] for line in printed] == ["Epoch 1", "Epoch 2", "Epoch 4", "Epoch 5"]


def test_validated_early_stopping_counts_evaluations_and_ignores_epochs_without_validation(caplog):
    from sasrec_tf.early_stopping import ValidatedEarlyStopping

    ranks = [3, 1, 5, 8, 11, 2, 7, 9]  # best at epoch 2; validated: 1, 2, 4, 6, 8
    model = ScriptedModel(ranks)
    early_stopping = ValidatedEarlyStopping("val_ndcg@10", patience=2)
    with caplog.at_level("WARNING"):
        history = fit(model, len(ranks), [ranking_callback(every_n_epochs=2), early_stopping])

    assert early_stopping.stopped_epoch == 6  # 1-based: two evaluations (epochs 4 and 6) without improvement
    assert history.validated_epochs == [0, 1, 3, 5]
    np.testing.assert_array_equal(model.item_scores.numpy(), scores_with_rank(1))  # epoch 2's weights
    assert "not available" not in caplog.text


def test_users_progress_draws_a_bar_only_on_a_terminal_with_verbose_1():
    from sasrec_tf.evaluation.callback import users_progress

    class Stream:
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty

    assert users_progress(1, stream=Stream(False)) is None
    assert users_progress(2, stream=Stream(True)) is None
    assert users_progress(0, stream=Stream(True)) is None
    assert callable(users_progress(1, stream=Stream(True)))


def test_tensorboard_after_the_callback_logs_the_metrics_as_validation_scalars(tmp_path):
    pytest.importorskip("tensorboard", reason="keras.callbacks.TensorBoard needs the tensorboard package")
    fit(ScriptedModel([3, 1]), 2, [ranking_callback(), keras.callbacks.TensorBoard(log_dir=str(tmp_path))])

    values = {}
    for path in glob.glob(os.path.join(tmp_path, "validation", "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                values.setdefault(value.tag, []).append(float(tf.make_ndarray(value.tensor)))
    assert values["epoch_ndcg@10"] == pytest.approx([ndcg(3), ndcg(1)])
    assert "epoch_hr@10" in values and "epoch_mrr" in values


def test_tensorboard_writes_validation_scalars_only_at_validated_epochs(tmp_path):
    pytest.importorskip("tensorboard", reason="keras.callbacks.TensorBoard needs the tensorboard package")
    fit(ScriptedModel([3, 1, 5, 8, 11]), 5,
        [ranking_callback(every_n_epochs=2), keras.callbacks.TensorBoard(log_dir=str(tmp_path))])

    steps = {}
    for path in glob.glob(os.path.join(tmp_path, "validation", "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                steps.setdefault(value.tag, []).append((event.step, float(tf.make_ndarray(value.tensor))))
    assert [step for step, _ in steps["epoch_ndcg@10"]] == [0, 1, 3, 4]
    assert [v for _, v in steps["epoch_ndcg@10"]] == pytest.approx([ndcg(3), ndcg(1), ndcg(8), ndcg(11)])


def test_sampled_protocol_uses_the_same_negatives_every_epoch():
    model = ScriptedModel([3])
    callback = ranking_callback(protocol="sampled", num_negatives=5, prefix="s_")
    callback.set_model(model)
    first = callback.compute_metrics()
    assert set(first) == {"s_hr@10", "s_ndcg@10", "s_mrr"}
    assert callback.compute_metrics() == first


def test_invalid_arguments_are_rejected_early():
    with pytest.raises(ValueError, match="protocol"):
        ranking_callback(protocol="approximate")
    with pytest.raises(ValueError, match="every_n_epochs"):
        ranking_callback(every_n_epochs=0)
    with pytest.raises(ValueError):
        RankingMetricsCallback([np.array([1])], np.array([1, 2]))
