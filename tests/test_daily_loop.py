"""The daily loop end to end (pipelines/daily.sh): two days of a log with new items on day two --
cold start, then warm start, recommendations and a gated export each day -- and the gate refusing a
deliberately worse model."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from sasrec_tf.data.ingest import read_interactions
from sasrec_tf.data.synthetic import generate_interactions

SCRIPT = Path(__file__).resolve().parents[1] / "pipelines" / "daily.sh"
TINY = "--epochs 4 --max-len 20 --hidden-units 16 --eval-every 4"


def run(args, env):
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)


def test_two_days_of_the_daily_loop_and_a_worse_model_refused(tmp_path):
    log = read_interactions(generate_interactions(num_users=600, num_items=200, mean_length=12, seed=5))
    new_items = {f"i{i}" for i in range(180, 200)}
    day1 = log[(log["timestamp"] < log["timestamp"].quantile(0.7)) & ~log["item"].isin(new_items)]
    day1.to_csv(tmp_path / "day1.csv", index=False)
    log.to_csv(tmp_path / "day2.csv", index=False)
    # The console script of this interpreter's environment first on PATH.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "TRAIN_ARGS": TINY, "K": "5"}
    runs, exports = tmp_path / "runs", tmp_path / "exports"

    first = run(["bash", str(SCRIPT), str(tmp_path / "day1.csv"), str(runs), str(exports), "day1"], env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "cold start" in first.stdout and (exports / "sasrec" / "1").is_dir()

    second = run(["bash", str(SCRIPT), str(tmp_path / "day2.csv"), str(runs), str(exports), "day2"], env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"warm-started from {runs / 'day1'}" in second.stdout and (exports / "sasrec" / "2").is_dir()
    parent = json.loads((runs / "day2" / "metrics.json").read_text())["parent"]
    card = json.loads((exports / "sasrec" / "2" / "assets.extra" / "card.json").read_text())
    assert card["parent"]["path"] == str(runs / "day1") and (runs / "day2" / "card.json").is_file()
    assert parent["new_items"] == log["item"].nunique() - day1["item"].nunique() >= 20
    recs = pd.read_parquet(runs / "day2" / "recommendations.parquet")
    assert list(recs.columns) == ["user_id", "rank", "item_id", "score"] and len(recs) == 600 * 5

    # A model that learned nothing must not replace the one being served.
    worse = run([sys.executable, "-m", "sasrec_tf.cli", "train", "--data", str(tmp_path / "day2.csv"), "--format",
                 "csv", "--out", str(runs / "bad"), "--epochs", "1", "--learning-rate", "1e-7", "--max-len", "20",
                 "--hidden-units", "16", "--eval-every", "1"], env)
    assert worse.returncode == 0, worse.stderr[-3000:]
    refused = run([sys.executable, "-m", "sasrec_tf.cli", "export", "--model", str(runs / "bad"), "--export-base",
                   str(exports), "--name", "sasrec", "--gate-on", "ndcg@10"], env)
    assert refused.returncode == 2 and "ndcg@10" in refused.stderr, refused.stderr[-3000:]
    assert sorted(p.name for p in (exports / "sasrec").iterdir() if not p.name.startswith(".")) == ["1", "2"]
