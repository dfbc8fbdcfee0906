"""`import sasrec_tf` works whichever Keras the process uses; TFRS needs Keras 2 and says so.

Each case runs in a fresh interpreter, since the Keras choice is made once per process.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TRAIN_ONE_STEP = """
import numpy as np
import sasrec_tf
from sasrec_tf._compat import keras
from sasrec_tf.data import training_dataset
model = sasrec_tf.SASRec(sasrec_tf.SASRecConfig(max_len=6, hidden_units=8, num_blocks=1), num_items=20)
model.compile(optimizer=keras.optimizers.Adam(1e-3))
data = training_dataset([np.arange(1, 10), np.arange(5, 12)], 20, 6, batch_size=2)
history = model.fit(data, epochs=1, verbose=0)
assert np.isfinite(history.history["loss"][0])
print("TRAINED")
"""


def run_python(*snippets: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return subprocess.run([sys.executable, "-c", "\n".join(textwrap.dedent(s) for s in snippets)], capture_output=True, text=True,
                          env=env, timeout=300)


def test_fresh_process_selects_keras_2_so_tfrs_imports_and_training_works():
    result = run_python(
        """
        import sasrec_tf
        import tensorflow as tf
        tfrs = sasrec_tf.import_tfrs()
        assert tfrs.tasks.Retrieval is not None
        assert not hasattr(tf.keras, "__version__") or tf.keras.__version__.startswith("2.")
        """, TRAIN_ONE_STEP
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "TRAINED" in result.stdout


def test_keras_3_already_active_core_works_and_tfrs_fails_with_a_clear_message():
    result = run_python(
        """
        import tensorflow as tf
        assert tf.keras.__version__.startswith("3."), tf.keras.__version__
        """, TRAIN_ONE_STEP, """
        try:
            sasrec_tf.import_tfrs()
        except sasrec_tf.TFRSUnavailableError as err:
            print("MESSAGE:", err)
        else:
            raise SystemExit("import_tfrs should have failed under Keras 3")
        """
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "TRAINED" in result.stdout
    assert "Keras 3" in result.stdout and "TF_USE_LEGACY_KERAS=1" in result.stdout
    assert "Traceback" not in result.stdout


def test_package_never_imports_tensorflow_keras():
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "sasrec_tf").rglob("*.py")
        if "tensorflow.keras" in path.read_text(encoding="utf-8") or "tf.keras." in path.read_text(encoding="utf-8")
    ]
    assert not offenders, f"modules using tensorflow.keras (use sasrec_tf._compat.keras): {offenders}"
