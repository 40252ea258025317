#!/usr/bin/env bash
# A training program in another language than Python: it reports on sweep's line protocol,
# one JSON object per line written to the file descriptor named by SWEEP_REPORT_FD
# (docs/PROGRAMS.md). Swept by examples/programs/shell-sweep.yaml with ${args_no_equals}:
#   train.sh --epochs 4 --rate 3
set -euo pipefail

epochs=3
rate=1
while [ $# -gt 0 ]; do
  case "$1" in
    --epochs) epochs="$2"; shift 2 ;;
    --rate) rate="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

# Outside a sweep there is no report descriptor: write the lines to stdout instead.
report() { if [ -n "${SWEEP_REPORT_FD:-}" ]; then echo "$1" >&"$SWEEP_REPORT_FD"; else echo "$1"; fi; }

report '{"define_metric": {"name": "score", "summary": "max"}}'
for epoch in $(seq 1 "$epochs"); do
  score=$((rate * epoch))
  echo "epoch $epoch: score $score"
  report "{\"log\": {\"score\": $score, \"epoch\": $epoch}}"
done
report '{"confusion": {"labels": ["no", "yes"], "counts": [[5, 1], [2, 7]]}}'
