#!/usr/bin/env bash
# Ingest: API → flatten → CSV → S3, side by side in one run (not a test).
#
#   make bench-ingest                  # N=100000
#   BENCH_N=10000 bench/ingest.sh      # smoke run
#
# Contenders, each in a fresh process, alternating order, medians over ROUNDS (default 3):
#   sluice_ingest              one backfill run of the hotmart-sales preset against sluice's sample
#                              API (its own process) into an S3 endpoint (its own process)
#   sluice_ingest_python_mock  the same run against ../shared/baselines/mock_sales_api.py, which
#                              serves ~20k records/s: API-bound, reported for reference
#   sluice_flatten_upload      the same N records from a JSONL file → flatten → CSV → S3 (the sink)
#   python_dfs_dictwriter      the Python DFS flattener on that file → a local CSV (no upload)
set -euo pipefail
. "$(dirname "$0")/common.sh"
start_services
"$PY" "$BASELINES/gen_sales.py" "$N" "$W/in.jsonl" >/dev/null
for r in $(seq 1 "$ROUNDS"); do
  run=(sluice mock upload dfs)
  [ $((r % 2)) = 0 ] && run=(dfs upload mock sluice)
  for c in "${run[@]}"; do
    case "$c" in
      sluice) "$BIN" ingest "http://127.0.0.1:$APIP" "$S3" "$N" ;;
      mock) "$BIN" ingest "http://127.0.0.1:$MOCKP" "$S3" "$N" --name sluice_ingest_python_mock ;;
      upload) "$BIN" flatten-upload "$W/in.jsonl" "$S3" ;;
      dfs) "$PY" "$BASELINES/flatten_python.py" "$W/in.jsonl" "$W/d.csv" --method dfs ;;
    esac 2>/dev/null
  done
done >"$RESULTS"
"$PY" - "$RESULTS" "$N" "$ROUNDS" <<'PYEOF'
import json, sys, platform, os
sys.path.insert(0, "bench")
from results import by_contender, medians
by = by_contender(sys.argv[1])
med = medians(by, median=("records_per_s", "api_wait_share"),
              peak=("peak_rss_mb",), first=("records",))
for m in med.values():
    m.setdefault("api_wait_share", 0)
print(f"# ingest, N={sys.argv[2]}, {sys.argv[3]} rounds, medians, {os.cpu_count()} cores, {platform.machine()}")
print(f"{'contender':28} {'records':>8} {'records/s':>10} {'API wait':>9} {'peak RSS MB':>12}")
for k, m in sorted(med.items(), key=lambda kv: -kv[1]["records_per_s"]):
    print(f"{k:28} {m['records']:>8} {m['records_per_s']:>10.0f} {m['api_wait_share']:>9.2f} {m['peak_rss_mb']:>12.1f}")
def ratio(a, b):
    return round(med[a]["records_per_s"] / med[b]["records_per_s"], 2) if a in med and b in med else None
print(json.dumps({"bench": "ingest", "n": int(sys.argv[2]), "ratios": {
    "flatten_upload_vs_python_dfs": ratio("sluice_flatten_upload", "python_dfs_dictwriter"),
    "ingest_sample_api_vs_python_dfs": ratio("sluice_ingest", "python_dfs_dictwriter"),
    "ingest_sample_api_vs_python_mock": ratio("sluice_ingest", "sluice_ingest_python_mock"),
}, "medians": med, "raw": [r for runs in by.values() for r in runs]}))
PYEOF
