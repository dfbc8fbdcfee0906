"""One way to run an experiment: typed options, pipeline files, overrides, and train-and-evaluate.

``sasrec-tf train``, ``sasrec-tf ablation``, the demo and ``benchmarks/quality.py`` all train
through :func:`train_and_evaluate`, so a number in a benchmark table is what the CLI gives.

Its options, :class:`DataOptions` (how to read and filter the log) and :class:`TrainOptions`
(validation cadence, early stopping, limits, evaluation), live below it in
:mod:`sasrec_tf.run_options`, where :func:`sasrec_tf.training.fit` takes its defaults from too;
they are re-exported here. The package, by role:

* :mod:`~sasrec_tf.experiment.pipeline_file` -- pipeline files (``pipelines/*.json``: sections
  ``model``, ``data``, ``train``), flags and ``--set NAME=VALUE`` through one typed parser
  (:class:`PipelineFile`, :func:`sasrec_tf.config.parse_option`): JSON values must have the
  field's type, flag and ``--set`` text is parsed by it, and an error names the value's source;
* :mod:`~sasrec_tf.experiment.run_dir` -- the run directory: fingerprint, resume, publish;
* :mod:`~sasrec_tf.experiment.run_callbacks` -- the callbacks a run adds to ``fit``;
* :mod:`~sasrec_tf.experiment.run` -- :func:`train_and_evaluate`: prepare → fit → evaluate → publish.

Importing the package (the options, pipeline files and run directory) imports no TensorFlow;
:func:`train_and_evaluate`, :class:`Result`, :func:`read_shards` and :func:`check_evaluable` are
imported from :mod:`~sasrec_tf.experiment.run` on first use (PEP 562).
"""

from __future__ import annotations

from sasrec_tf._lazy import lazy_exports

from sasrec_tf.run_options import MONITORS, SECTIONS, DataOptions, TrainOptions
from sasrec_tf.experiment.pipeline_file import PIPELINE_SECTIONS, Pipeline, PipelineFile, apply_overrides, load_pipeline
from sasrec_tf.experiment.run_dir import BACKUP_DIR, LOGS_DIR, METRICS_FILE, RUN_FILE, run_fingerprint

# Public name -> the module that defines it, for the names whose module imports TensorFlow.
_LAZY = {
    "Result": "sasrec_tf.experiment.run",
    "check_evaluable": "sasrec_tf.experiment.inputs",
    "read_shards": "sasrec_tf.experiment.inputs",
    "train_and_evaluate": "sasrec_tf.experiment.run",
}

__all__ = ["BACKUP_DIR", "LOGS_DIR", "METRICS_FILE", "MONITORS", "PIPELINE_SECTIONS", "RUN_FILE", "SECTIONS",
           "DataOptions", "Pipeline", "PipelineFile", "TrainOptions", "apply_overrides", "load_pipeline",
           "run_fingerprint", *_LAZY]


__getattr__, __dir__ = lazy_exports(__name__, globals(), _LAZY)
