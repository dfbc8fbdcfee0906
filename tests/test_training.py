"""Training end to end: the model learns sequential structure; interrupted training resumes."""

import numpy as np
import pytest
import tensorflow as tf

from sasrec_tf import SASRecConfig, training
from sasrec_tf._compat import keras
from sasrec_tf.baselines import MostPopular
from sasrec_tf.data.sequences import build_sequences, leave_one_out
from sasrec_tf.data.synthetic import generate_interactions
from sasrec_tf.evaluation import evaluate_full


@pytest.fixture(scope="module")
def split():
    log = generate_interactions(num_users=1200, num_items=300, mean_length=15, seed=3)
    return leave_one_out(build_sequences(log))


SMALL = dict(max_len=20, hidden_units=32, num_blocks=2, dropout_rate=0.2, batch_size=128, seed=1)


def test_trained_model_clearly_beats_most_popular_on_sequential_data(split):
    model = training.build_model(SASRecConfig(**SMALL, epochs=25), split.num_items)
    training.fit(model, split, eval_every=25, verbose=0)
    sasrec = evaluate_full(model, split.test_inputs, split.test_targets)
    popular = evaluate_full(MostPopular(split.train, split.num_items), split.test_inputs, split.test_targets)
    assert sasrec["hr@10"] > 2 * popular["hr@10"], (sasrec, popular)
    assert sasrec["ndcg@10"] > 2 * popular["ndcg@10"], (sasrec, popular)


class _Interrupt(keras.callbacks.Callback):
    def __init__(self, at_epoch):
        super().__init__()
        self.at_epoch = at_epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.at_epoch:
            raise RuntimeError("simulated crash")


class _EpochRecorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


def test_interrupted_training_resumes_after_the_last_completed_epoch(split, tmp_path):
    config = SASRecConfig(**SMALL, epochs=5)
    first = training.build_model(config, split.num_items)
    with pytest.raises(RuntimeError, match="simulated crash"):
        training.fit(first, split, out_dir=tmp_path, eval_every=1, verbose=0, callbacks=[_Interrupt(2)])
    assert (tmp_path / "backup").exists()

    recorder = _EpochRecorder()
    resumed = training.build_model(config, split.num_items)
    history = training.fit(resumed, split, out_dir=tmp_path, eval_every=1, verbose=0, callbacks=[recorder])
    assert recorder.epochs == [3, 4], "epochs 0-2 completed before the crash and must not be rerun"
    assert len(history.history["loss"]) == 2
    assert "val_ndcg@10" in history.history
    assert not (tmp_path / "backup").exists() or not any((tmp_path / "backup").iterdir())


class _PoisonWeights(keras.callbacks.Callback):
    """Sets the item embedding to NaN when an epoch begins: that epoch's loss is NaN."""

    def __init__(self, at_epoch):
        super().__init__()
        self.at_epoch = at_epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at_epoch:
            weights = self.model.item_embedding.embeddings
            weights.assign(tf.fill(tf.shape(weights), float("nan")))


def test_a_loss_that_becomes_nan_stops_training_and_keeps_the_last_good_backup(tmp_path):
    split = leave_one_out(build_sequences(generate_interactions(num_users=150, num_items=100, mean_length=8, seed=4)))
    config = SASRecConfig(max_len=8, hidden_units=8, num_blocks=1, batch_size=64, epochs=4, seed=1)
    model = training.build_model(config, split.num_items)
    with pytest.raises(training.TrainingDiverged, match="loss became nan in epoch 2.*state after epoch 1"):
        training.fit(model, split, out_dir=tmp_path, eval_every=4, verbose=0, callbacks=[_PoisonWeights(1)])

    recorder = _EpochRecorder()
    resumed = training.build_model(config, split.num_items)
    training.fit(resumed, split, out_dir=tmp_path, epochs=2, eval_every=4, verbose=0, callbacks=[recorder])
    assert recorder.epochs == [1], "the backup holds epoch 1, not the NaN epoch 2"
    assert all(np.isfinite(w).all() for w in resumed.get_weights())


def test_validation_metrics_drive_early_stopping_and_best_weights(split):
    model = training.build_model(SASRecConfig(**SMALL, epochs=10, learning_rate=0.02), split.num_items)
    history = training.fit(model, split, eval_every=1, patience=2, verbose=0)
    scores = history.history["val_ndcg@10"]
    final = evaluate_full(model, split.valid_inputs, split.valid_targets, ks=(10,))["ndcg@10"]
    assert final == pytest.approx(max(scores), abs=1e-6)


def test_weight_decay_is_decoupled_and_spares_biases_and_layer_norm(split):
    from sasrec_tf.data.pipeline import training_dataset

    base = SASRecConfig(**{**SMALL, "dropout_rate": 0.0}, learning_rate=0.01)
    batch = next(iter(training_dataset(split.train, split.num_items, base.max_len, base.batch_size, seed=5)))

    def one_step(config):
        model = training.build_model(config, split.num_items)
        before = {w.name: w.numpy().copy() for w in model.trainable_weights}
        model.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0)
        return before, {w.name: w.numpy() for w in model.trainable_weights}

    before, plain = one_step(base)
    _, decayed = one_step(base.replace(weight_decay=0.5))
    assert isinstance(training.make_optimizer(base.replace(weight_decay=0.5)), keras.optimizers.AdamW)
    checked = set()
    for name, value in decayed.items():
        if any(part in name for part in ("bias", "gamma", "beta")):
            np.testing.assert_allclose(value, plain[name], atol=1e-7)
            checked.add("spared")
        else:  # first step: same Adam update, plus w -= lr * wd * w
            np.testing.assert_allclose(value, plain[name] - 0.01 * 0.5 * before[name], atol=1e-6)
            checked.add("decayed")
    assert checked == {"spared", "decayed"}
    with pytest.raises(ValueError, match="weight_decay"):
        SASRecConfig(weight_decay=-0.1)



def test_fit_with_eval_every_2_records_validation_only_where_it_ran(split, tmp_path, capsys):
    """History and the TensorBoard event file hold val_* values at validated epochs only (issue
    25); the bar knows its length from the first epoch and the validation prints its own line."""
    model = training.build_model(SASRecConfig(**SMALL, epochs=4), split.num_items)
    history = training.fit(model, split, out_dir=tmp_path, eval_every=3, patience=5, verbose=1)

    assert history.validated_epochs == [0, 2, 3]  # the first, every third, the last
    values = history.history["val_ndcg@10"]
    assert len(values) == len(history.history["loss"]) == 4
    assert np.isnan(values[1]) and not np.isnan(values).all()
    assert not any(np.isnan(values[i]) for i in history.validated_epochs)
    steps = set()
    for path in (tmp_path / "logs" / "validation").glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            if any(value.tag == "epoch_ndcg@10" for value in event.summary.value):
                steps.add(event.step)
    assert steps == {0, 2, 3}

    lines = capsys.readouterr().out.splitlines()
    from sasrec_tf.data.pipeline import steps_per_epoch
    steps_in_epoch = steps_per_epoch(split.train, SMALL["max_len"], SMALL["batch_size"])
    assert not any("Unknown" in line for line in lines)
    assert any(line.startswith(f"{steps_in_epoch}/{steps_in_epoch} [") for line in lines[:steps_in_epoch + 3])
    validation = [line for line in lines if "val_ndcg@10" in line]
    assert [line.split(":")[0] for line in validation] == ["Epoch 1", "Epoch 3", "Epoch 4"]  # own lines
