#!/usr/bin/env bash
# The daily production loop: warm-start training on the new log, batch recommendations, export
# behind the publish gate. Then roll the new version out with serving/README.md's two-step canary.
#
#   pipelines/daily.sh LOG RUNS_DIR EXPORT_BASE [RUN_NAME]
#
# LOG is today's full interaction log; RUNS_DIR holds one trained model directory per day (the
# newest, by name, is the parent of today's run; none on the first day: a cold start); RUN_NAME
# defaults to today's date (YYYY-MM-DD). Environment: FORMAT (default csv), TRAIN_ARGS (extra
# `sasrec-tf train` flags, default the recommended recipe), K (default 20), GATE_METRIC (default
# ndcg@10), GATE_TOLERANCE (default 0.0). Exits non-zero, having published nothing, when the new
# model is worse than the version being served by more than the tolerance.
set -euo pipefail

if [[ $# -lt 3 || $# -gt 4 ]]; then
  echo "usage: $0 LOG RUNS_DIR EXPORT_BASE [RUN_NAME]" >&2
  exit 2
fi
log=$1 runs=$2 exports=$3 name=${4:-$(date +%F)}
format=${FORMAT:-csv}
here=$(cd "$(dirname "$0")" && pwd)
read -r -a train_args <<< "${TRAIN_ARGS:---config $here/recommended.json}"

mkdir -p "$runs"
parent=$(find "$runs" -mindepth 1 -maxdepth 1 -type d ! -name "$name" ! -name '.*' | sort | tail -n 1)
warm=()
if [[ -n $parent ]]; then
  warm=(--warm-start "$parent")
  echo "== train $runs/$name, warm-started from $parent"
else
  echo "== train $runs/$name (first run: cold start)"
fi
sasrec-tf train --data "$log" --format "$format" --out "$runs/$name" "${train_args[@]}" "${warm[@]}"

echo "== batch recommendations: $runs/$name/recommendations.parquet"
sasrec-tf recommend --model "$runs/$name" --data "$log" --format "$format" --k "${K:-20}" \
  --out "$runs/$name/recommendations.parquet"

echo "== export behind the gate (${GATE_METRIC:-ndcg@10}, tolerance ${GATE_TOLERANCE:-0.0})"
sasrec-tf export --model "$runs/$name" --export-base "$exports" --name sasrec \
  --gate-on "${GATE_METRIC:-ndcg@10}" --gate-tolerance "${GATE_TOLERANCE:-0.0}"

echo "== next: the two-step canary in serving/README.md (add the version, wait until it is AVAILABLE, then move the label)"
