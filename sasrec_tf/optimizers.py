"""The optimizers a config can name, and a fused Adam.

Keras' Adam (``tf_keras``) writes its update as separate operations: for every variable about ten
element-wise passes over the variable and its two moments, each with its own temporary. SASRec's
item table is the largest variable by far (``num_items x d``) and takes a full pass each time even
though its gradient is a ``tf.IndexedSlices`` of the rows a batch touched (input items, positives,
negatives): on the paper's configuration its update was about 12% of a training step's host time
(``benchmarks/profile_step.py``). :class:`Adam` applies the same arithmetic with TensorFlow's fused ``ResourceApplyAdam``
kernel, one multi-threaded pass per variable; results equal Keras' to float rounding
(``tests/test_optimizers.py``). Like Keras', it sums the repeated rows of a sparse gradient
before squaring (``apply_gradients`` deduplicates them): a row's gradient is the sum of its
occurrences, as in TensorFlow 1's ``AdamOptimizer`` (the paper's code) and PyTorch's (the reference
port). Keras 3's Adam, which this package does not use, squares each occurrence instead.

:class:`LazyAdam` (opt-in, ``SASRecConfig.optimizer="lazy_adam"``) updates only the rows of a
sparse gradient: their moments and values, with the global step's bias correction, as TensorFlow
Addons' ``LazyAdam`` did. Rows absent from a batch keep their moments instead of decaying them and
do not move: cheaper on large catalogues, and a different optimiser, so not a default; its quality
is measured in ``docs/results.md`` ("Training throughput").
"""

from __future__ import annotations

import tensorflow as tf

from sasrec_tf._compat import keras
from sasrec_tf.choices import OPTIMIZER_SPECS, check_registry
from sasrec_tf.config import SASRecConfig

__all__ = ["NO_WEIGHT_DECAY", "OPTIMIZERS", "Adam", "AdamW", "LazyAdam", "make"]


class _AdamArithmetic:
    """The update step shared by :class:`Adam` and :class:`AdamW` (AdamW's decoupled weight decay
    is applied by the base optimizer before the update step, so the step itself is Adam's)."""

    def _moments(self, variable):
        index = self._index_dict[self._var_key(variable)]
        return self._momentums[index], self._velocities[index]

    def _step_constants(self, dtype):
        """Adam's scalars at this step: ``beta_1``, ``beta_2``, their powers, ``lr`` and epsilon."""
        local_step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        beta_2_power = tf.pow(beta_2, local_step)
        epsilon = tf.cast(self.epsilon, dtype)
        if getattr(self, "adaptive_epsilon", False):
            epsilon = epsilon * tf.sqrt(1 - beta_2_power)
        return beta_1, beta_2, tf.pow(beta_1, local_step), beta_2_power, tf.cast(self.learning_rate, dtype), epsilon

    def update_step(self, gradient, variable):
        if isinstance(gradient, tf.IndexedSlices):  # rows already unique: apply_gradients summed repeats
            gradient = tf.convert_to_tensor(gradient)
        if self.amsgrad:
            return super().update_step(gradient, variable)
        beta_1, beta_2, beta_1_power, beta_2_power, lr, epsilon = self._step_constants(variable.dtype)
        m, v = self._moments(variable)
        return tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=m.handle, v=v.handle, beta1_power=beta_1_power, beta2_power=beta_2_power,
            lr=lr, beta1=beta_1, beta2=beta_2, epsilon=epsilon, grad=tf.cast(gradient, variable.dtype))


@keras.utils.register_keras_serializable(package="sasrec_tf")
class Adam(_AdamArithmetic, keras.optimizers.Adam):
    """``keras.optimizers.Adam`` with a fused update kernel: same arguments, same arithmetic, same
    state (checkpoints load either way)."""


@keras.utils.register_keras_serializable(package="sasrec_tf")
class AdamW(_AdamArithmetic, keras.optimizers.AdamW):
    """``keras.optimizers.AdamW`` with :class:`Adam`'s update step."""


@keras.utils.register_keras_serializable(package="sasrec_tf")
class LazyAdam(Adam):
    """:class:`Adam` that updates, for a sparse gradient, only the rows it holds (their moments and
    values); dense gradients (every other weight) get :class:`Adam`'s update."""

    def update_step(self, gradient, variable):
        if not isinstance(gradient, tf.IndexedSlices) or self.amsgrad:
            return super().update_step(gradient, variable)
        beta_1, beta_2, beta_1_power, beta_2_power, lr, epsilon = self._step_constants(variable.dtype)
        # apply_gradients has summed repeated rows: each row appears once.
        rows, row_gradient = gradient.indices, tf.cast(gradient.values, variable.dtype)
        m, v = self._moments(variable)
        m_rows = beta_1 * tf.gather(m, rows) + (1 - beta_1) * row_gradient
        v_rows = beta_2 * tf.gather(v, rows) + (1 - beta_2) * tf.square(row_gradient)
        m.scatter_update(tf.IndexedSlices(m_rows, rows))
        v.scatter_update(tf.IndexedSlices(v_rows, rows))
        alpha = lr * tf.sqrt(1 - beta_2_power) / (1 - beta_1_power)
        return variable.scatter_sub(tf.IndexedSlices(alpha * m_rows / (tf.sqrt(v_rows) + epsilon), rows))


# Variables that decoupled weight decay leaves alone: biases and LayerNorm scales and offsets.
NO_WEIGHT_DECAY = ["bias", "gamma", "beta"]

# SASRecConfig.optimizer -> (class, class with decoupled weight decay or None), in the order of
# their declarations (sasrec_tf.choices.OPTIMIZER_SPECS, which configuration checks read).
_CLASSES = {
    "adam": (Adam, AdamW),
    "lazy_adam": (LazyAdam, None),
    "keras_adam": (keras.optimizers.Adam, keras.optimizers.AdamW),
}


def _check_declarations() -> None:
    """Fail at import if the classes and :data:`sasrec_tf.choices.OPTIMIZER_SPECS` disagree."""
    check_registry("optimizer", OPTIMIZER_SPECS, _CLASSES)
    for name, (_, decoupled) in _CLASSES.items():
        if (decoupled is not None) != OPTIMIZER_SPECS[name].weight_decay:
            raise ImportError(f"optimizer {name!r}: sasrec_tf.choices declares weight_decay="
                              f"{OPTIMIZER_SPECS[name].weight_decay}, but the registry "
                              f"{'has a' if decoupled is not None else 'has no'} variant with weight decay")


_check_declarations()
OPTIMIZERS = {name: _CLASSES[name] for name in OPTIMIZER_SPECS}


def make(name: str, *, learning_rate: float, weight_decay: float = 0.0, beta_1: float = SASRecConfig.beta_1,
         beta_2: float = SASRecConfig.beta_2, epsilon: float = SASRecConfig.epsilon) -> keras.optimizers.Optimizer:
    """The optimizer ``name`` with these settings (the defaults: :class:`~sasrec_tf.config.SASRecConfig`'s).

    Args:
      name: a key of :data:`OPTIMIZERS`.
      learning_rate: the step size.
      weight_decay: > 0 selects the variant with decoupled weight decay, applied to kernels and
        embeddings only (not to biases or LayerNorm: :data:`NO_WEIGHT_DECAY`).
      beta_1: Adam's first-moment decay.
      beta_2: Adam's second-moment decay.
      epsilon: Adam's epsilon.

    Returns:
      A ``keras.optimizers.Optimizer``.

    Raises:
      ValueError: ``weight_decay`` > 0 for an optimizer without a weight-decay variant.
    """
    plain, decoupled = OPTIMIZERS[name]
    if not weight_decay:
        return plain(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon)
    if decoupled is None:
        raise ValueError(f"optimizer {name!r} has no variant with weight decay; use 'adam' with weight_decay")
    optimizer = decoupled(learning_rate=learning_rate, weight_decay=weight_decay, beta_1=beta_1, beta_2=beta_2,
                          epsilon=epsilon)
    optimizer.exclude_from_weight_decay(var_names=NO_WEIGHT_DECAY)
    return optimizer
