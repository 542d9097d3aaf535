#!/usr/bin/env bash
# flatten + CSV: sluice vs the Python baselines, side by side in one run (not a test).
#
#   make bench-flatten                 # N=100000, baselines from ../shared/baselines
#   BENCH_N=10000 bench/flatten.sh     # smoke run
#
# Each round runs every contender once, in alternating order, each in a fresh process, on the
# same input file; the report gives medians over ROUNDS (default 3) and ratios to sluice.
set -euo pipefail
. "$(dirname "$0")/common.sh"
"$PY" "$BASELINES/gen_sales.py" "$N" "$W/in.jsonl" >/dev/null
for r in $(seq 1 "$ROUNDS"); do
  run=(sluice floor dfs pandas orjson sluice_index)
  [ $((r % 2)) = 0 ] && run=(pandas dfs orjson floor sluice_index sluice)
  for c in "${run[@]}"; do
    case "$c" in
      sluice) "$BIN" flatten "$W/in.jsonl" "$W/s.csv" ;;
      sluice_index) "$BIN" flatten "$W/in.jsonl" "$W/si.csv" --arrays index ;;
      floor) "$BIN" parse-floor "$W/in.jsonl" ;;
      dfs) "$PY" "$BASELINES/flatten_python.py" "$W/in.jsonl" "$W/d.csv" --method dfs ;;
      pandas) "$PY" "$BASELINES/flatten_python.py" "$W/in.jsonl" "$W/p.csv" --method pandas ;;
      orjson) "$PY" "$BASELINES/parse_python.py" "$W/in.jsonl" --lib orjson ;;
    esac 2>/dev/null
  done
done >"$RESULTS"
"$PY" - "$RESULTS" "$N" "$ROUNDS" <<'PYEOF'
import json, sys, platform, os
sys.path.insert(0, "bench")
from results import by_contender, medians
med = medians(by_contender(sys.argv[1]), median=("records_per_s", "mb_per_s"), peak=("peak_rss_mb",))
s = med["sluice_flatten_csv"]
print(f"# flatten + CSV, N={sys.argv[2]}, {sys.argv[3]} rounds, medians, {os.cpu_count()} cores, {platform.machine()}")
print(f"{'contender':32} {'records/s':>11} {'MB/s':>8} {'peak RSS MB':>12} {'sluice ×':>9}")
for k, m in sorted(med.items(), key=lambda kv: -kv[1]["records_per_s"]):
    ratio = s["records_per_s"] / m["records_per_s"]
    print(f"{k:32} {m['records_per_s']:>11.0f} {m['mb_per_s']:>8.1f} {m['peak_rss_mb']:>12.1f} {ratio:>9.2f}")
print(json.dumps({"bench": "flatten", "n": int(sys.argv[2]), "medians": med}))
PYEOF
