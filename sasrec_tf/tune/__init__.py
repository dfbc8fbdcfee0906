"""Hyperparameter search (``sasrec-tf tune``): an Optuna study over a search space, each trial
trained by the one training path and judged on validation only.

* :mod:`~sasrec_tf.tune.space` -- the search-space file (ranges and choices over
  ``SASRecConfig`` and ``TrainOptions`` fields, checked by the typed parser of ``--set``);
* :mod:`~sasrec_tf.tune.study` -- :func:`tune`: the study (resumable RDB storage), the trials,
  pruning from each trial's validation curve, the best configuration's final run;
* :mod:`~sasrec_tf.tune.report` -- the trial lines, ``trials.csv``, ``best.json``, ``tune.png``.

Importing the package imports neither TensorFlow nor Optuna; :func:`tune` and the names of
:mod:`~sasrec_tf.tune.study` are imported on first use (PEP 562).
"""

from __future__ import annotations

from sasrec_tf._lazy import lazy_exports
from sasrec_tf.tune.space import Param, SearchSpace, load_space

_LAZY = {
    "PruneOnValidation": "sasrec_tf.tune.study",
    "TuneResult": "sasrec_tf.tune.study",
    "tune": "sasrec_tf.tune.study",
}

__all__ = ["Param", "SearchSpace", "load_space", *_LAZY]

__getattr__, __dir__ = lazy_exports(__name__, globals(), _LAZY)
