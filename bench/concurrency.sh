#!/usr/bin/env bash
# Loaders at once into one table (not a test): 1, 2, 4 and 8 loaders on distinct objects.
#
#   make bench-concurrency             # N=100000 in PARTS=16 objects, ROUNDS=3
#   BENCH_N=10000 ROUNDS=1 bench/concurrency.sh
#
# N generated sales (gen_sales.py), flattened by sluice, split into PARTS objects of distinct
# keys in one bucket of a local S3 endpoint. Each run starts from no table and loads every object
# with K loaders at once (`sluice-bench load-s3 --concurrency K`: K tasks, each with its own
# Loader and its own pool of at most 2 connections, as K Lambda instances would be, taking the
# next object when done), with the built-in Hotmart mapping. After each run the table is checked:
# every row read is there once, and no object failed. Each K is a fresh process, the order
# alternates, medians over ROUNDS. Postgres' own COPY of the loaded rows is timed after each run.
# Needs DATABASE_URL (make wraps this in scripts/with-services).
set -euo pipefail
: "${DATABASE_URL:?set DATABASE_URL (make bench-concurrency starts Postgres if needed)}"
. "$(dirname "$0")/common.sh"
PARTS="${PARTS:-16}"
KS=(${CONCURRENCY:-1 2 4 8})
s3p=$(free_port)
"$BIN" s3 "$W/s3" "$s3p" & s3pid=$!
trap 'kill "$s3pid" 2>/dev/null; rm -rf "$W"' EXIT
wait_http "$s3p"
S3="http://127.0.0.1:$s3p"
"$PY" "$BASELINES/gen_sales.py" "$N" "$W/sales.jsonl" >/dev/null
"$BIN" flatten "$W/sales.jsonl" "$W/sales.csv" >/dev/null
"$BIN" put-parts "$W/sales.csv" "$S3" parts "$PARTS"
for r in $(seq 1 "$ROUNDS"); do
  ks=("${KS[@]}"); [ $((r % 2)) = 0 ] && ks=($(printf '%s\n' "${KS[@]}" | tac))
  for k in "${ks[@]}"; do
    "$BIN" load-s3 "$S3" parts raw/ --concurrency "$k" 2>/dev/null
  done
done >"$RESULTS"
"$PY" - "$RESULTS" "$N" "$ROUNDS" "$PARTS" <<'PYEOF'
import json, os, platform, statistics, sys
sys.path.insert(0, "bench")
from results import by_contender
n, rounds, parts = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
by = by_contender(sys.argv[1], name=lambda r: r["concurrency"])
floor = statistics.median(r["pg_copy_floor_s"] for v in by.values() for r in v)
print(f"# {n} rows in {parts} objects, one table, built-in Hotmart mapping; {rounds} rounds, medians; "
      f"{os.cpu_count()} cores, {platform.machine()}")
print(f"# Postgres alone COPYs the loaded rows in {floor:.2f} s ({n / floor:,.0f} rows/s)")
print("| loaders | rows/s | seconds | × 1 loader | × Postgres' COPY | peak RSS MB (one process) |")
print("|---:|---:|---:|---:|---:|---:|")
med = {k: statistics.median(r["records_per_s"] for r in v) for k, v in sorted(by.items())}
one = med.get(1)
for k, v in sorted(by.items()):
    secs = statistics.median(r["seconds"] for r in v)
    x1 = f"{med[k] / one:.2f}" if one else "—"
    print(f"| {k} | {med[k]:,.0f} | {secs:.2f} | {x1} | {floor / secs:.2f} | {max(r['peak_rss_mb'] for r in v)} |")
print(json.dumps({"bench": "concurrency", "n": n, "parts": parts, "rounds": rounds,
                  "rows_per_s": med, "pg_copy_floor_s": floor}))
PYEOF
