"""The names of the files in a trained model directory (``sasrec-tf train --out DIR``) and of an
export version's ``assets.extra``, declared once.

TensorFlow-free, so the model card, ``sasrec-tf info`` and the run directory's bookkeeping read
them without loading TensorFlow; :mod:`sasrec_tf.artifacts` writes and reads the model files,
:mod:`sasrec_tf.experiment.run_dir` the run's, :mod:`sasrec_tf.card` the card.
"""

from __future__ import annotations

__all__ = ["MODEL_FILE", "CONFIG_FILE", "VOCAB_FILE", "USERS_FILE", "ITEM_COUNTS_FILE", "ATTRIBUTES_FILE",
           "ITEM_ATTRIBUTES_FILE", "METRICS_FILE",
           "BACKUP_DIR", "LOGS_DIR", "RUN_FILE", "ASSETS_EXTRA_DIR"]

# The model (sasrec_tf.artifacts).
MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.txt"  # line i = raw id of dense item i
USERS_FILE = "users.txt"  # only for a model with a user embedding
ITEM_COUNTS_FILE = "item_counts.npy"  # training interactions per dense id (popularity for empty histories)
# Item features (a model with feature_fusion other than "none"); model.keras holds the same table.
ATTRIBUTES_FILE = "attributes.txt"  # line a = the attribute token of attribute id a (1-based)
ITEM_ATTRIBUTES_FILE = "item_attributes.npz"  # "table" [N + 1, width] attribute ids, "trained" [N + 1] bool
# The run (sasrec_tf.experiment).
METRICS_FILE = "metrics.json"
BACKUP_DIR = "backup"  # Keras' BackupAndRestore state, and RUN_FILE, while a run is unfinished
LOGS_DIR = "logs"  # TensorBoard
RUN_FILE = "run.json"  # in BACKUP_DIR: the run's fingerprint and progress, for a resume
# An export version (sasrec_tf.export): TF Serving's directory for files beside the SavedModel
# (warmup requests; ours: the export's description and the model card).
ASSETS_EXTRA_DIR = "assets.extra"
