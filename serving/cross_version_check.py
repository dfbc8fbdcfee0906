"""Does an export load, and answer the same, on the TensorFlow inside the serving image?

TensorFlow guarantees forward compatibility of graphs only within a patch release, and the
``tensorflow/serving`` image may be older than the TensorFlow that wrote the export. This script
checks a pair before you deploy it:

1. creates a virtualenv (``--venv``, default ``~/.cache/sasrec-tf/tf-VERSION``) and installs
   ``tensorflow-cpu==VERSION`` into it with pip (nothing else; the check does not need this
   package there);
2. in that interpreter, loads the export the way TF Serving does — the session-based loader with
   tag ``serve`` and the SignatureDefs' tensor names — and runs every signature on the inputs of
   the export's own warmup requests;
3. does the same with this interpreter's TensorFlow and compares every output: string outputs
   must be equal, float outputs within ``--rtol``.

Usage::

    python serving/cross_version_check.py --export exports/sasrec/1 --tensorflow 2.20.0

Prints one line per signature and batch, then ``OK`` (exit 0) or what differs (exit 1).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

# Runs under either TensorFlow; needs only tensorflow and numpy.
LOADER = r'''
import json, sys
import numpy as np
import tensorflow as tf

export, requests_file, out_file = sys.argv[1:]
with open(requests_file, encoding="utf-8") as handle:
    requests = json.load(handle)
results = {"__version__": np.array(tf.__version__.encode(), dtype="S")}
graph = tf.Graph()
with tf.compat.v1.Session(graph=graph) as session:
    meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], export)
    for index, (signature, inputs) in enumerate(requests):
        definition = meta_graph.signature_def[signature]
        feed = {definition.inputs[name].name: np.array(value, dtype=object) for name, value in inputs.items()}
        names = sorted(definition.outputs)
        values = session.run([definition.outputs[name].name for name in names], feed_dict=feed)
        for name, value in zip(names, values):
            value = np.asarray(value)
            results[f"{index}/{signature}/{name}"] = value.astype("S") if value.dtype == object else value
np.savez(out_file, **results)
'''


def warmup_inputs(export: Path) -> list[tuple[str, dict[str, list]]]:
    """``[(signature, {input: nested list of str})]`` from the export's warmup requests."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = export / "assets.extra" / "tf_serving_warmup_requests"
    requests = []
    for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
        request = prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
        inputs = {name: np.vectorize(lambda b: b.decode("utf-8"), otypes=[object])(tf.make_ndarray(proto)).tolist()
                  for name, proto in request.inputs.items()}
        requests.append((request.model_spec.signature_name or "serving_default", inputs))
    return requests


def ensure_venv(venv: Path, version: str) -> Path:
    """The interpreter of a virtualenv with ``tensorflow-cpu==version`` (created when missing)."""
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import tensorflow as tf; print(tf.__version__)"]
    if python.exists() and subprocess.run(probe, capture_output=True, text=True).stdout.strip() == version:
        return python
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", f"tensorflow-cpu=={version}"], check=True)
    return python


def run_loader(python: str, export: Path, requests_file: Path, out_file: Path) -> dict[str, np.ndarray]:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as script:
        script.write(LOADER)
    try:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
        subprocess.run([python, script.name, str(export), str(requests_file), str(out_file)], check=True, env=env)
    finally:
        os.unlink(script.name)
    with np.load(out_file) as data:
        return {key: data[key] for key in data.files}


def compare(ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray], rtol: float) -> list[str]:
    """One line per output; lines starting with ``DIFF`` are failures."""
    lines = []
    for key in sorted(set(ours) | set(theirs)):
        if key == "__version__":
            continue
        if key not in ours or key not in theirs:
            lines.append(f"DIFF {key}: only in {'this' if key in ours else 'the other'} TensorFlow")
            continue
        a, b = ours[key], theirs[key]
        if a.shape != b.shape:
            same = False
        elif a.dtype.kind in "SUb":
            same = bool(np.array_equal(a, b))
        else:
            same = bool(np.allclose(a, b, rtol=rtol, atol=0, equal_nan=True))
        lines.append(f"{'ok  ' if same else 'DIFF'} {key} {list(a.shape)}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", required=True, type=Path, help="a version directory, e.g. exports/sasrec/1")
    parser.add_argument("--tensorflow", required=True, help="the serving image's TensorFlow version, e.g. 2.20.0")
    parser.add_argument("--venv", type=Path, help="where to install it (default ~/.cache/sasrec-tf/tf-VERSION)")
    parser.add_argument("--rtol", type=float, default=1e-5)
    args = parser.parse_args(argv)
    export = args.export.resolve()
    venv = args.venv or Path.home() / ".cache" / "sasrec-tf" / f"tf-{args.tensorflow}"
    python = ensure_venv(venv, args.tensorflow)
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        (work / "requests.json").write_text(json.dumps(warmup_inputs(export)), encoding="utf-8")
        ours = run_loader(sys.executable, export, work / "requests.json", work / "ours.npz")
        theirs = run_loader(str(python), export, work / "requests.json", work / "theirs.npz")
    print(f"export {export}: TensorFlow {ours['__version__'].item().decode()} (this interpreter) against "
          f"{theirs['__version__'].item().decode()} ({python}), session loader, tag serve")
    lines = compare(ours, theirs, args.rtol)
    print("\n".join(lines))
    failed = [line for line in lines if line.startswith("DIFF")]
    print("OK: every signature gives the same outputs" if not failed else f"{len(failed)} outputs differ")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
