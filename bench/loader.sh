#!/usr/bin/env bash
# The loader's path vs raw COPY (the floor), the COPY+staging upsert and the tutorial's per-row
# upsert, on one Postgres in one run (not a test).
#
#   make bench-loader                  # N=100000 (gen_sales.py + sluice flatten: 42 columns)
#   BENCH_N=10000 bench/loader.sh      # smoke run
#   TUTORIAL_N=100000                  # rows for the per-row method (default N; it is slow)
#
# New keys: every contender starts from an empty keyed table. Existing keys: the table holds
# version 1 and every row of version 2 changes. Each round runs every contender once, alternating
# the order, each in a fresh process; the report gives medians over ROUNDS (default 3). Needs
# DATABASE_URL (make wraps this in scripts/with-services).
set -euo pipefail
: "${DATABASE_URL:?set DATABASE_URL (make bench-loader starts Postgres if needed)}"
. "$(dirname "$0")/common.sh"
TN="${TUTORIAL_N:-$N}"
# sluice_*_ff: the same loads into a table created with `table.fillfactor = FF` (room on each page
# for an update to stay there: a HOT update, which writes no index entry).
FF="${FILLFACTOR:-50}"
sales_versions
head -n $((TN + 1)) "$W/v1.csv" >"$W/t1.csv"
# sluice gets the baseline table's column types (so Postgres does the same type work on both
# sides); `sluice_hotmart` is the built-in mapping (timestamptz, jsonb, lineage, guard), and
# `typed_copy` its floor: a plain COPY of the rows that mapping makes into the same empty table.
M=(--mapping bench/mappings/baseline-types.toml)
UP=("$PY" "$BASELINES/upsert_python.py" --table bench_sales --key purchase_transaction)
for r in $(seq 1 "$ROUNDS"); do
  run=(sluice_new raw stage_new sluice_old stage_old sluice_hotmart typed_copy sluice_new_ff sluice_old_ff sluice_hotmart_text sluice_old_text)
  [ $((r % 2)) = 0 ] && run=(sluice_old_text sluice_hotmart_text sluice_old_ff sluice_new_ff typed_copy sluice_hotmart stage_old sluice_old stage_new raw sluice_new)
  for c in "${run[@]}"; do
    case "$c" in
      sluice_new) "$BIN" load "$W/v1.csv" "${M[@]}" ;;
      sluice_old) "$BIN" load "$W/v2.csv" --after "$W/v1.csv" "${M[@]}" ;;
      sluice_new_ff) "$BIN" load "$W/v1.csv" "${M[@]}" --fillfactor "$FF" ;;
      sluice_old_ff) "$BIN" load "$W/v2.csv" --after "$W/v1.csv" "${M[@]}" --fillfactor "$FF" ;;
      sluice_hotmart) "$BIN" load "$W/v1.csv" | sed 's/"sluice_loader_new_keys"/"sluice_loader_new_keys_hotmart_mapping"/' ;;
      typed_copy) "$BIN" load "$W/v1.csv" --typed-copy ;;
      # The same two loads with the rows sent in COPY's text format instead of binary.
      sluice_hotmart_text) COPY_FORMAT=text "$BIN" load "$W/v1.csv" | sed 's/"sluice_loader_new_keys"/"sluice_loader_new_keys_hotmart_mapping_text"/' ;;
      sluice_old_text) COPY_FORMAT=text "$BIN" load "$W/v2.csv" --after "$W/v1.csv" "${M[@]}" | sed 's/"sluice_loader_existing_keys"/"sluice_loader_existing_keys_text"/' ;;
      raw) "${UP[@]}" --csv "$W/v1.csv" --method copy_raw --fresh ;;
      stage_new) "${UP[@]}" --csv "$W/v1.csv" --method copy_stage --fresh ;;
      stage_old)
        "${UP[@]}" --csv "$W/v1.csv" --method copy_raw --fresh >/dev/null
        "${UP[@]}" --csv "$W/v2.csv" --method copy_stage | sed 's/"upsert_copy_stage"/"upsert_copy_stage_existing"/' ;;
    esac 2>/dev/null
  done
done >"$RESULTS"
# The seed's per-row method once (minutes at 100k rows).
"${UP[@]}" --csv "$W/t1.csv" --method tutorial --fresh 2>/dev/null >>"$RESULTS"
# Peak memory on a 1,000,000-row file (the Lambda minimum is 128 MB).
if [ "${BIG_N:-1000000}" -gt 0 ]; then
  "$PY" "$BASELINES/gen_sales.py" "${BIG_N:-1000000}" "$W/big.jsonl" >/dev/null
  "$BIN" flatten "$W/big.jsonl" "$W/big.csv" >/dev/null
  rm -f "$W/big.jsonl"
  "$BIN" load "$W/big.csv" "${M[@]}" | sed 's/"sluice_loader_new_keys"/"sluice_loader_1m_rows"/' >>"$RESULTS"
fi
"$PY" - "$RESULTS" "$N" "$ROUNDS" <<'PYEOF'
import json, sys, platform, os
sys.path.insert(0, "bench")
from results import by_contender, medians
def contender(r):
    # The staging upsert into a table that already has the rows is its own contender.
    if r["baseline"] == "upsert_copy_stage" and r.get("table_rows_before", 0):
        return "upsert_copy_stage_existing"
    return r["baseline"]
by = by_contender(sys.argv[1], contender)
med = medians(by, median=("rows_per_s",), peak=("peak_rss_mb",), first=("rows",))
floor = med["upsert_copy_raw"]["rows_per_s"]
print(f"# loader, N={sys.argv[2]}, {sys.argv[3]} rounds, medians, {os.cpu_count()} cores, {platform.machine()}")
print(f"{'contender':32} {'rows':>8} {'rows/s':>10} {'× raw COPY':>11} {'peak RSS MB':>12}")
for k, m in sorted(med.items(), key=lambda kv: -kv[1]["rows_per_s"]):
    print(f"{k:32} {m['rows']:>8} {m['rows_per_s']:>10.0f} {m['rows_per_s'] / floor:>11.2f} {m['peak_rss_mb']:>12.1f}")
def ratio(a, b):
    return round(med[a]["rows_per_s"] / med[b]["rows_per_s"], 2) if a in med and b in med else None
ff_old = next((k for k in med if k.startswith("sluice_loader_existing_keys_fillfactor")), None)
ff_new = next((k for k in med if k.startswith("sluice_loader_new_keys_fillfactor")), None)
summary = {
    "new_keys_vs_raw_copy": ratio("sluice_loader_new_keys", "upsert_copy_raw"),
    "existing_keys_vs_raw_copy": ratio("sluice_loader_existing_keys", "upsert_copy_raw"),
    "new_keys_vs_copy_stage": ratio("sluice_loader_new_keys", "upsert_copy_stage"),
    "existing_keys_vs_copy_stage": ratio("sluice_loader_existing_keys", "upsert_copy_stage_existing"),
    "existing_keys_fillfactor_vs_raw_copy": ratio(ff_old, "upsert_copy_raw"),
    "existing_keys_fillfactor_vs_copy_stage": ratio(ff_old, "upsert_copy_stage_existing"),
    "new_keys_fillfactor_vs_raw_copy": ratio(ff_new, "upsert_copy_raw"),
    "new_keys_vs_tutorial": ratio("sluice_loader_new_keys", "upsert_tutorial"),
    "hotmart_mapping_vs_typed_copy": ratio("sluice_loader_new_keys_hotmart_mapping", "pg_copy_typed_rows"),
    "hotmart_mapping_binary_vs_text": ratio("sluice_loader_new_keys_hotmart_mapping", "sluice_loader_new_keys_hotmart_mapping_text"),
    "existing_keys_binary_vs_text": ratio("sluice_loader_existing_keys", "sluice_loader_existing_keys_text"),
}
print(json.dumps({"bench": "loader", "n": int(sys.argv[2]), "ratios": summary, "medians": med, "raw": [r for runs in by.values() for r in runs]}))
PYEOF
