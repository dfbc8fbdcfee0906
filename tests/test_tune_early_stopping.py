"""Early stopping that one noisy validation cannot end (issue 30 item 3): scripted validation
curves through ValidatedEarlyStopping (no training), Keras' rule kept exactly at the defaults, and one
line printed when a run stops early."""

import numpy as np
import pytest

from sasrec_tf import SASRecConfig
from sasrec_tf._compat import keras
from sasrec_tf.config import OptionError
from sasrec_tf.experiment import TrainOptions
from sasrec_tf.early_stopping import ValidatedEarlyStopping

MONITOR = "val_ndcg@10"


class _EpochModel:
    """Stands in for the model: its "weights" are the epoch they were taken at."""

    def __init__(self):
        self.epoch, self.restored, self.stop_training = None, None, False

    def get_weights(self):
        return [self.epoch]

    def set_weights(self, weights):
        self.restored = weights[0]


def _drive(callback, curve):
    """Run the scripted curve (None: an epoch that did not validate) through ``callback`` until it
    stops; returns the fake model (``restored``: the 1-based epoch whose weights are restored)."""
    model = _EpochModel()
    callback.set_model(model)
    callback.on_train_begin()
    for epoch, value in enumerate(curve):
        model.epoch = epoch + 1
        callback.on_epoch_end(epoch, {} if value is None else {MONITOR: value, "loss": 1.0})
        if model.stop_training:
            break
    callback.on_train_end()
    return model


def test_the_defaults_are_keras_early_stopping_exactly():
    rng = np.random.default_rng(0)
    for trial in range(40):
        curve = list(np.round(rng.uniform(0.1, 0.3, size=12), 2))  # ties included
        for skipped in rng.choice(12, size=3, replace=False):
            curve[skipped] = None
        patience = int(rng.integers(1, 4))
        ours = ValidatedEarlyStopping(MONITOR, patience)
        keras_rule = keras.callbacks.EarlyStopping(monitor=MONITOR, mode="max", patience=patience,
                                                   restore_best_weights=True)
        validated = [i for i, v in enumerate(curve) if v is not None]
        ours_model = _drive(ours, curve)
        keras_model = _EpochModel()
        keras_rule.set_model(keras_model)
        keras_rule.on_train_begin()
        for epoch in validated:  # Keras' rule shown only the validated epochs
            keras_model.epoch = epoch + 1
            keras_rule.on_epoch_end(epoch, {MONITOR: curve[epoch]})
            if keras_model.stop_training:
                break
        keras_rule.on_train_end()
        assert ours.stopped_epoch == (keras_rule.stopped_epoch + 1 if keras_rule.stopped_epoch else 0), curve
        assert ours_model.restored == keras_model.restored == ours.best_epoch, curve


# Rising, with one noisy dip at epoch 4 (the seed 43: one dip ended the run).
DIP = [0.10, 0.20, 0.30, 0.22, 0.31, 0.33, 0.35, 0.36]


def test_one_dip_ends_a_run_under_the_plain_rule():
    callback = ValidatedEarlyStopping(MONITOR, patience=1)
    model = _drive(callback, DIP)
    assert callback.stopped_epoch == 4
    assert model.restored == 3


def test_smoothing_over_two_validations_survives_the_dip_and_keeps_the_best_epoch():
    callback = ValidatedEarlyStopping(MONITOR, patience=1, smoothing=2)
    model = _drive(callback, DIP)
    assert callback.stopped_epoch == 0  # means 0.15 0.25 0.26 0.265 0.32 0.34 0.355: always better
    assert model.restored == 8


def test_smoothing_still_stops_a_curve_that_has_peaked():
    curve = [0.10, 0.30, 0.40, 0.30, 0.20, 0.10, 0.05, 0.02]
    callback = ValidatedEarlyStopping(MONITOR, patience=2, smoothing=3)
    model = _drive(callback, curve)
    # means: .10 .20 .267 .333 .30 .20: best at epoch 4, no improvement at 5 and 6
    assert callback.stopped_epoch == 6
    assert model.restored == 3  # the weights are the best raw validation's, not the best mean's


def test_min_delta_stops_on_gains_too_small_but_restores_the_raw_best():
    curve = [0.200, 0.201, 0.202, 0.203, 0.204]
    callback = ValidatedEarlyStopping(MONITOR, patience=2, min_delta=0.005)
    model = _drive(callback, curve)
    assert callback.stopped_epoch == 3
    assert model.restored == 3


def test_min_epochs_forbids_an_early_stop_then_allows_it():
    curve = [0.30, 0.20, 0.20, 0.20, 0.20, 0.20]
    callback = ValidatedEarlyStopping(MONITOR, patience=1, min_epochs=5)
    model = _drive(callback, curve)
    assert callback.stopped_epoch == 5
    assert model.restored == 1


def test_epochs_that_did_not_validate_are_neither_counted_nor_averaged():
    curve = [0.10, None, 0.30, None, 0.20, None, 0.35, None]
    callback = ValidatedEarlyStopping(MONITOR, patience=1, smoothing=2)
    model = _drive(callback, curve)
    # validations .10 .30 .20 .35 -> means .10 .20 .25 .275: always better
    assert callback.stopped_epoch == 0 and model.restored == 7
    assert callback.values == [0.10, 0.30, 0.20, 0.35]


def test_the_stop_is_one_line_naming_the_rule_and_the_restored_epoch(capsys):
    _drive(ValidatedEarlyStopping(MONITOR, patience=1, smoothing=2, verbose=1), [0.3, 0.1, 0.1])
    out = capsys.readouterr().out
    assert out.count("early stopping") == 1
    assert out.strip() == ("Epoch 2: early stopping: the mean val_ndcg@10 of the last 2 did not improve in 1 "
                           "validation(s); restoring the weights of epoch 1 (val_ndcg@10 0.3000)")


@pytest.mark.parametrize("field, value", [("smoothing", 0), ("min_delta", -0.1), ("min_delta", float("nan")),
                                          ("min_epochs", -1)])
def test_train_options_refuse_a_wrong_value_naming_the_option(field, value):
    with pytest.raises(OptionError, match=f"TrainOptions.{field}"):
        TrainOptions(**{field: value})


def test_a_run_that_stops_early_prints_it_once_and_records_it(capsys):
    from sasrec_tf.data.sequences import build_sequences
    from sasrec_tf.data.synthetic import generate_interactions
    from sasrec_tf.experiment import train_and_evaluate

    data = build_sequences(generate_interactions(num_users=100, num_items=80, mean_length=8, max_length=20, seed=3))
    config = SASRecConfig(max_len=8, hidden_units=8, num_blocks=1, batch_size=64, epochs=6, seed=1)
    # No gain can exceed min_delta 1: the second validation ends the run.
    options = TrainOptions(eval_every=1, patience=1, min_delta=1.0, eval_negatives=20)
    result = train_and_evaluate(data, config, options=options, verbose=2)
    out = capsys.readouterr().out
    assert out.lower().count("early stopping") == 1
    assert "Restoring model weights" not in out
    assert result.metrics["training"]["stopped"] == "early"
    assert result.metrics["training"]["epochs"] == 2
    assert result.metrics["training"]["best_epoch"] in (1, 2)
