"""Quality of ``--strategy parameter_server`` against one process, same configuration and seeds.

    python benchmarks/parameter_server_quality.py /path/to/Beauty.txt --format s3rec --seeds 1 2 --epochs 20

For each seed, ``sasrec-tf train`` runs once in one process and once on a loopback cluster of this
machine (a chief, 2 workers, 2 ps tasks: ``sasrec_tf.testing.cluster.run_parameter_server_cluster``),
both at the paper's configuration; prints the test metrics of both protocols and the epoch time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", help="interaction log")
    parser.add_argument("--format", default="s3rec")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--out", help="working directory (default: a temporary one, removed)")
    args = parser.parse_args(argv)

    from sasrec_tf.testing.cluster import run_parameter_server_cluster

    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.out or tmp)
        rows = []
        for seed in args.seeds:
            for kind in ("single", "parameter_server"):
                out = root / f"{kind}{seed}"
                argv = [sys.executable, "-m", "sasrec_tf.cli", "train", "--data", args.data, "--format", args.format,
                        "--epochs", str(args.epochs), "--seed", str(seed), "--eval-every", str(args.epochs),
                        "--overwrite", "--out", str(out)]
                if kind == "single":
                    done = subprocess.run(argv, env=env, capture_output=True, text=True)
                    code, output = done.returncode, done.stdout + done.stderr
                else:
                    run = run_parameter_server_cluster([*argv, "--strategy", kind], 2, 2, timeout=6 * 3600, env=env)
                    code, output = run.chief.returncode, run.chief.output
                if code != 0:
                    print(output[-4000:])
                    return 1
                metrics = json.loads((out / "metrics.json").read_text())
                rows.append((seed, kind, metrics["test"]["full"], metrics["test"]["sampled"],
                             metrics["training"]["seconds_per_epoch"]))
                print(f"seed {seed} {kind:16s} test full hr@10 {rows[-1][2]['hr@10']:.4f} ndcg@10 "
                      f"{rows[-1][2]['ndcg@10']:.4f} | sampled hr@10 {rows[-1][3]['hr@10']:.4f} ndcg@10 "
                      f"{rows[-1][3]['ndcg@10']:.4f} | {rows[-1][4]:.1f} s/epoch", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
