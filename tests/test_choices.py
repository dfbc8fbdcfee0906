"""The TF-free declarations of objectives and optimizers: a config is checked without TensorFlow,
and the TensorFlow registries agree with the declarations."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sasrec_tf import choices

ROOT = Path(__file__).resolve().parents[1]


def test_a_config_is_built_checked_and_read_back_without_importing_tensorflow():
    code = ("import sys, sasrec_tf; c = sasrec_tf.SASRecConfig(); c.validate(); "
            "sasrec_tf.SASRecConfig.from_dict(c.to_dict()); "
            "sasrec_tf.SASRecConfig(loss='sampled_softmax', negative_sampling='popularity', logq_correction=True, "
            "optimizer='lazy_adam', beta_2=0.999); "
            "assert 'tensorflow' not in sys.modules, sorted(m for m in sys.modules if 'tensorflow' in m)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr


def test_the_objectives_registry_is_built_from_the_declarations():
    from sasrec_tf.objectives import OBJECTIVES

    assert list(OBJECTIVES) == list(choices.OBJECTIVE_SPECS)
    for name, spec in choices.OBJECTIVE_SPECS.items():
        for field in dataclasses.fields(spec):
            assert getattr(OBJECTIVES[name], field.name) == getattr(spec, field.name)
        assert callable(OBJECTIVES[name].compute)


def test_the_optimizers_registry_is_built_from_the_declarations():
    from sasrec_tf.optimizers import OPTIMIZERS

    assert list(OPTIMIZERS) == list(choices.OPTIMIZER_SPECS)
    for name, (_, decoupled) in OPTIMIZERS.items():
        assert (decoupled is not None) == choices.OPTIMIZER_SPECS[name].weight_decay


def test_a_registry_that_drifts_from_its_declarations_refuses_to_import():
    with pytest.raises(ImportError, match=r"declared but not implemented \['b'\], implemented but not declared \['c'\]"):
        choices.check_registry("objective", {"a": 1, "b": 2}, {"a": 1, "c": 3})
    choices.check_registry("objective", {"a": 1}, {"a": 2})
