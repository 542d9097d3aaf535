#!/usr/bin/env bash
# The lake's queries, and compaction: `sluice query` (DataFusion) next to DuckDB on the same
# Parquet files, and one day of per-request objects before and after compaction (not a test).
#
#   make bench-query                      # N=1000000 unicorns over 10 days; a day of 20000 requests
#   BENCH_N=20000 ROUNDS=1 bench/query.sh # smoke run
#
# 1. N unicorns (gen_unicorns.py) as a compacted lake: 10 days, one object a day. Each engine runs
#    each query in a fresh process (open the tables, run, fetch), alternating order, medians:
#      per_color   the example sightings-per-color over the view (the dedupe window)
#      scan        count and averages over the objects table (no window)
# 2. One day of per-request objects (REQUESTS objects of 5 records, N/10 records at most): the
#    objects' count and per_color's time, then `sluice compact` over the local S3 endpoint (merge
#    and commit, then the replaced objects deleted), then the count and the time again.
set -euo pipefail
. "$(dirname "$0")/common.sh"
DUCK="$(scripts/venv duckdb scripts/duckdb-requirements.txt)/bin/python"
REQUESTS="${REQUESTS:-20000}"
"$PY" "$BASELINES/gen_unicorns.py" "$N" "$W/in.jsonl" >/dev/null
PER_COLOR="$(grep -v '^--' queries/sightings-per-color.sql | tr '\n' ' ')"
SCAN="SELECT count(*) AS n, avg(horn_length_cm) AS horn, max(age_years) AS oldest FROM unicorns_objects"
run_queries() { # ROOT TAG
  for r in $(seq 1 "$ROUNDS"); do
    local order=(sluice duckdb); [ $((r % 2)) = 0 ] && order=(duckdb sluice)
    for q in per_color scan; do
      local sql="$PER_COLOR"; [ "$q" = scan ] && sql="$SCAN"
      for e in "${order[@]}"; do
        case "$e" in
          sluice) "$BIN" query "$1" "sluice_${q}_$2" "$sql" ;;
          duckdb) "$DUCK" bench/query_duckdb.py "$1" "duckdb_${q}_$2" "$sql" ;;
        esac
      done
    done
  done
}
# 1. The compacted lake.
"$BIN" lake "$W/in.jsonl" "$W/lake" 10 1000000000 >"$W/lake.json"
run_queries "$W/lake" lake >"$RESULTS"
# 2. A day of requests, compacted.
head -n "$((REQUESTS * 5 < N / 10 ? REQUESTS * 5 : N / 10))" "$W/in.jsonl" >"$W/day.jsonl"
mkdir -p "$W/s3/day"
"$BIN" lake "$W/day.jsonl" "$W/s3/day" 1 5 >"$W/day.json"
count() { find "$W/s3/day/lake" -name '*.parquet' | wc -l; }
BEFORE=$(count)
run_queries "$W/s3/day" before >>"$RESULTS"
port=$(free_port)
"$BIN" s3 "$W/s3" "$port" & S3PID=$!
trap 'kill $S3PID 2>/dev/null; rm -rf "$W"' EXIT
wait_http "$port"
"$BIN" compact "http://127.0.0.1:$port" day 2026-01-01 >>"$RESULTS"
AFTER=$(count)
run_queries "$W/s3/day" after >>"$RESULTS"
"$PY" - "$RESULTS" "$N" "$ROUNDS" "$BEFORE" "$AFTER" "$W/lake.json" <<'PYEOF'
import json, os, platform, sys
sys.path.insert(0, "bench")
from results import by_contender, medians
path, n, rounds, before, after, lake = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
by = by_contender(path)
compact = by.pop("sluice_compact")[0]
med = medians(by, median=("seconds",), peak=("peak_rss_mb",), first=("rows",))
print(f"# sluice query (DataFusion) and DuckDB, fresh process per query, {rounds} rounds, medians, "
      f"{os.cpu_count()} cores, {platform.machine()}")
print(f"## {n} unicorns, 10 days, one object a day")
print(f"{'query':10} {'sluice s':>9} {'duckdb s':>9} {'sluice ÷ duckdb':>16} {'sluice MB':>10} {'duckdb MB':>10}")
for q in ["per_color", "scan"]:
    s, d = med[f"sluice_{q}_lake"], med[f"duckdb_{q}_lake"]
    print(f"{q:10} {s['seconds']:>9.3f} {d['seconds']:>9.3f} {s['seconds'] / d['seconds']:>16.2f} "
          f"{s['peak_rss_mb']:>10.1f} {d['peak_rss_mb']:>10.1f}")
print(f"## one day of {compact['records']} records in per-request objects, compacted")
print(f"objects: {before} before, {after} after; compaction merged {compact['objects_in']} objects into "
      f"{compact['objects_out']} in {compact['merge_seconds']} s ({compact['records_per_s']:.0f} records/s), "
      f"deleted {compact['retired']} in {compact['retire_seconds']} s, peak RSS {compact['peak_rss_mb']} MB")
print(f"{'per_color':10} {'before s':>9} {'after s':>9} {'before ÷ after':>15}")
for e in ["sluice", "duckdb"]:
    b, a = med[f"{e}_per_color_before"], med[f"{e}_per_color_after"]
    print(f"{e:10} {b['seconds']:>9.3f} {a['seconds']:>9.3f} {b['seconds'] / a['seconds']:>15.1f}")
print(json.dumps({"bench": "query", "n": n, "objects_before": before, "objects_after": after,
                  "compact": compact, "medians": med}))
PYEOF
