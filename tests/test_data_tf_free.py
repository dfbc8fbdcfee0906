"""Reading logs, vocabularies, sequences and shard directories imports no TensorFlow.

Each import runs in a fresh interpreter: TensorFlow is imported only by the tf.data pipeline
(``sasrec_tf.data.pipeline``) and by the TFRecord reader's functions when they build a dataset.
"""

import subprocess
import sys

import pytest

TF_FREE = [
    "sasrec_tf.data",
    "sasrec_tf.data.ingest",
    "sasrec_tf.data.vocab",
    "sasrec_tf.data.sequences",
    "sasrec_tf.data.sequence_rules",
    "sasrec_tf.data.rules",
    "sasrec_tf.data.tfrecord",
]


@pytest.mark.parametrize("module", TF_FREE)
def test_importing_the_module_imports_no_tensorflow_nor_the_pipeline(module):
    code = (f"import sys, {module}; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow'; "
            "assert 'sasrec_tf.data.pipeline' not in sys.modules, 'sasrec_tf.data.pipeline'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_pipeline_names_still_import_from_sasrec_tf_data():
    code = ("import sys, sasrec_tf.data as data; from sasrec_tf.data import pad_sequences; "
            "assert 'tensorflow' in sys.modules; "
            "assert data.training_dataset is sys.modules['sasrec_tf.data.pipeline'].training_dataset")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
