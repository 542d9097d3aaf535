#!/usr/bin/env bash
# The workload the 7-minute schedule really makes, at the loader (not a test):
#   updates   the sample API's `updates` mode after its first load: 20 % of the rows are changed
#             sales the table holds, 80 % are new;
#   lookback  the same rows again, unchanged (a lookback re-fetch); also with a `row_hash` column
#             in the mapping (`--row-hash`), on both loads: keys and hashes are read back.
# sluice's loader against the Python COPY + staging upsert (upsert_python.py copy_stage) on the
# same CSV and column types, and raw COPY into an empty keyed table: the cost of reading the rows.
# dlt's merge (../shared/baselines/dlt_sales.py, `--mode merge` and `--mode csv`) runs the same
# schedule against the same API: a first load (not timed), then the `updates` pull; its `load`
# step (staging, then dlt's merge SQL) is the part that compares with sluice's loader, and its
# whole run (extract + normalize + load) is reported beside it. DLT=0 leaves dlt out.
#
#   make bench-updates                 # N=100000, ROUNDS=3
#   BENCH_N=10000 ROUNDS=1 bench/updates.sh
set -euo pipefail
: "${DATABASE_URL:?set DATABASE_URL (make bench-updates starts Postgres if needed)}"
. "$(dirname "$0")/common.sh"
start_services
api="http://127.0.0.1:$APIP"
"$PY" bench/sample_jsonl.py "$api" "$W/v1.jsonl" >/dev/null
curl -fsS -X POST "$api/_mock/reset?mode=updates" >/dev/null
"$PY" bench/sample_jsonl.py "$api" "$W/upd.jsonl" >/dev/null
"$BIN" flatten "$W/v1.jsonl" "$W/v1.csv" >/dev/null
"$BIN" flatten "$W/upd.jsonl" "$W/upd.csv" >/dev/null
# The re-fetch is another object with the same rows (the loader's ledger skips an object it has
# loaded already, by bucket and key).
cp "$W/v1.csv" "$W/lookback.csv"
M=(--mapping bench/mappings/baseline-types.toml)
UP=("$PY" "$BASELINES/upsert_python.py" --table bench_sales --key purchase_transaction)
as() { sed "s/\"$1\"/\"$2\"/"; }
dlt_updates() { # MODE: a first load, then the updates pull into the table it made
  rm -rf "$W/dlt"
  curl -fsS -X POST "$api/_mock/reset?mode=initial" >/dev/null
  "$PY" "$BASELINES/dlt_sales.py" --api "$api" --mode "$1" --fresh --work-dir "$W/dlt" >/dev/null
  curl -fsS -X POST "$api/_mock/reset?mode=updates" >/dev/null
  "$PY" "$BASELINES/dlt_sales.py" --api "$api" --mode "$1" --work-dir "$W/dlt" |
    sed 's/"baseline": "\([a-z_]*\)"/"baseline": "\1_updates"/'
}
dlt=(dlt_merge dlt_csv)
[ "${DLT:-1}" = 0 ] && dlt=()
for r in $(seq 1 "$ROUNDS"); do
  run=(sluice_updates stage_updates sluice_lookback stage_lookback raw sluice_lookback_hash sluice_updates_hash sluice_updates_ff "${dlt[@]}")
  [ $((r % 2)) = 0 ] && run=("${dlt[@]}" sluice_updates_ff sluice_updates_hash sluice_lookback_hash raw stage_lookback sluice_lookback stage_updates sluice_updates)
  for c in "${run[@]}"; do
    case "$c" in
      sluice_updates) "$BIN" load "$W/upd.csv" --after "$W/v1.csv" "${M[@]}" | as sluice_loader_existing_keys sluice_loader_updates ;;
      sluice_updates_ff) "$BIN" load "$W/upd.csv" --after "$W/v1.csv" "${M[@]}" --fillfactor 50 |
        as sluice_loader_existing_keys_fillfactor50 sluice_loader_updates_fillfactor50 ;;
      sluice_lookback) "$BIN" load "$W/lookback.csv" --after "$W/v1.csv" "${M[@]}" | as sluice_loader_existing_keys sluice_loader_lookback ;;
      sluice_lookback_hash) "$BIN" load "$W/lookback.csv" --after "$W/v1.csv" "${M[@]}" --row-hash |
        as sluice_loader_existing_keys_row_hash sluice_loader_lookback_row_hash ;;
      sluice_updates_hash) "$BIN" load "$W/upd.csv" --after "$W/v1.csv" "${M[@]}" --row-hash |
        as sluice_loader_existing_keys_row_hash sluice_loader_updates_row_hash ;;
      stage_updates)
        "${UP[@]}" --csv "$W/v1.csv" --method copy_raw --fresh >/dev/null
        "${UP[@]}" --csv "$W/upd.csv" --method copy_stage | as upsert_copy_stage upsert_copy_stage_updates ;;
      stage_lookback)
        "${UP[@]}" --csv "$W/v1.csv" --method copy_raw --fresh >/dev/null
        "${UP[@]}" --csv "$W/lookback.csv" --method copy_stage | as upsert_copy_stage upsert_copy_stage_lookback ;;
      raw) "${UP[@]}" --csv "$W/v1.csv" --method copy_raw --fresh ;;
      dlt_merge) dlt_updates merge ;;
      dlt_csv) dlt_updates csv ;;
    esac 2>/dev/null
  done
done >"$RESULTS"
"$PY" - "$RESULTS" "$N" "$ROUNDS" <<'PYEOF'
import json, sys, platform, os
sys.path.insert(0, "bench")
from results import by_contender, medians
by = by_contender(sys.argv[1])
for k, runs in by.items():
    if k.startswith("dlt_"):  # dlt's load step is what compares with a loader; its whole run beside it
        for x in runs:
            x["whole_s"], x["seconds"], x["rows"] = x["seconds"], x["steps_s"]["load"], x["records"]
            x["rows_per_s"] = x["rows"] / x["seconds"]
med = medians(by, median=("rows_per_s", "seconds", "whole_s"),
              first=("rows", "inserted", "updated", "unchanged", "copy_ms", "upsert_ms", "table_rows",
                     "rows_from_this_run"))
print(f"# updates and lookback at the loader, N={sys.argv[2]}, {sys.argv[3]} rounds, medians, {os.cpu_count()} cores, {platform.machine()}")
print("# dlt: its load step (staging + merge SQL); whole = extract + normalize + load")
print(f"{'contender':38} {'rows':>8} {'rows/s':>10} {'seconds':>8} {'inserted/updated/unchanged':>28} {'whole s':>8}")
for k, m in sorted(med.items(), key=lambda kv: -kv[1]["rows_per_s"]):
    mix = "/".join(str(m[f]) for f in ("inserted", "updated", "unchanged")) if "inserted" in m else ""
    whole = f"{m['whole_s']:.3f}" if "whole_s" in m else ""
    print(f"{k:38} {m['rows']:>8} {m['rows_per_s']:>10.0f} {m['seconds']:>8.3f} {mix:>28} {whole:>8}")
def ratio(a, b):
    return round(med[a]["rows_per_s"] / med[b]["rows_per_s"], 2) if a in med and b in med else None
print(json.dumps({"bench": "updates", "n": int(sys.argv[2]), "ratios": {
    "updates_vs_copy_stage": ratio("sluice_loader_updates", "upsert_copy_stage_updates"),
    "updates_fillfactor50_vs_copy_stage": ratio("sluice_loader_updates_fillfactor50", "upsert_copy_stage_updates"),
    "lookback_vs_copy_stage": ratio("sluice_loader_lookback", "upsert_copy_stage_lookback"),
    "lookback_vs_raw_copy": ratio("sluice_loader_lookback", "upsert_copy_raw"),
    "lookback_row_hash_vs_copy_stage": ratio("sluice_loader_lookback_row_hash", "upsert_copy_stage_lookback"),
    "lookback_row_hash_vs_raw_copy": ratio("sluice_loader_lookback_row_hash", "upsert_copy_raw"),
    "updates_row_hash_vs_copy_stage": ratio("sluice_loader_updates_row_hash", "upsert_copy_stage_updates"),
    "updates_vs_dlt_merge_load_step": ratio("sluice_loader_updates", "dlt_rest_api_merge_updates"),
    "updates_vs_dlt_csv_load_step": ratio("sluice_loader_updates", "dlt_rest_api_merge_csv_updates"),
}, "medians": med, "raw": [r for runs in by.values() for r in runs]}))
PYEOF
