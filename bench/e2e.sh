#!/usr/bin/env bash
# End to end: API → S3 → Postgres, sluice against dlt on the same Postgres, in one run (not a test).
#
#   make bench-e2e                     # N=100000, ROUNDS=3
#   BENCH_N=10000 ROUNDS=1 bench/e2e.sh
#
# sluice = the ingest (API → flatten → CSV → S3) then the loader over the objects it wrote
# (S3 → COPY → upsert), each in its own process as the two Lambdas are; its time is the sum.
# sluice overlapped = the same two, at once (`sluice-bench pipeline`): the ingest closes an
# object per 7-day window chunk, and each object goes to a loader as it lands, at most
# OVERLAP_K (2) loaders at once, as S3 notifications start loader Lambdas; timed from the
# ingest's start to the last load's end.
# dlt = ../shared/baselines/dlt_sales.py (rest_api source → Postgres merge), `--mode csv`
# (COPY, dlt's fastest) and `--mode merge` (its default). Both pipelines pull sluice's sample
# API (each in a fresh process, alternating order, medians over ROUNDS), then once each against
# the Python mock, which caps any fast pipeline: those lines are marked API-bound.
set -euo pipefail
: "${DATABASE_URL:?set DATABASE_URL (make bench-e2e starts Postgres if needed)}"
. "$(dirname "$0")/common.sh"
start_services
sluice_e2e() { # API_URL TAG
  local b="e2e-$RANDOM$RANDOM"
  "$BIN" ingest "$1" "$S3" "$N" --bucket "$b" --name "sluice_ingest$2"
  "$BIN" load-s3 "$S3" "$b" raw/ | sed "s/\"sluice_loader_s3\"/\"sluice_loader_s3$2\"/"
}
overlapped() { # API_URL TAG
  "$BIN" pipeline "$1" "$S3" "$N" --concurrency "${OVERLAP_K:-2}" --name "sluice_overlapped$2"
}
dlt() { # API_URL MODE TAG
  "$PY" "$BASELINES/dlt_sales.py" --api "$1" --mode "$2" --fresh --work-dir "$W/dlt" |
    sed "s/\"baseline\": \"\\([a-z_]*\\)\"/\"baseline\": \"\\1$3\"/"
}
for r in $(seq 1 "$ROUNDS"); do
  run=(sluice overlapped csv merge overlapped_text)
  [ $((r % 2)) = 0 ] && run=(overlapped_text merge csv overlapped sluice)
  for c in "${run[@]}"; do
    case "$c" in
      sluice) sluice_e2e "http://127.0.0.1:$APIP" "" ;;
      overlapped) overlapped "http://127.0.0.1:$APIP" "" ;;
      # The same with the loaders sending COPY's text format instead of binary.
      overlapped_text) COPY_FORMAT=text overlapped "http://127.0.0.1:$APIP" "" | sed 's/"sluice_overlapped"/"sluice_overlapped_text"/' ;;
      csv) dlt "http://127.0.0.1:$APIP" csv "" ;;
      merge) dlt "http://127.0.0.1:$APIP" merge "" ;;
    esac 2>/dev/null
  done
done >"$RESULTS"
{ sluice_e2e "http://127.0.0.1:$MOCKP" _python_mock; overlapped "http://127.0.0.1:$MOCKP" _python_mock; dlt "http://127.0.0.1:$MOCKP" csv _python_mock; } 2>/dev/null >>"$RESULTS"
"$PY" - "$RESULTS" "$N" "$ROUNDS" <<'PYEOF'
import json, statistics, sys, platform, os
sys.path.insert(0, "bench")
from results import by_contender
n = int(sys.argv[2])
by = by_contender(sys.argv[1])
def overlapped(out, key):
    v = by.get(key, [])
    if v:
        out[key] = {"records_per_s": statistics.median(x["records_per_s"] for x in v),
            "seconds": statistics.median(x["seconds"] for x in v),
            "api_wait_s": statistics.median(x["api_wait_s"] for x in v),
            "peak_rss_mb": {"ingest": max(x["peak_rss_mb"]["ingest"] for x in v),
                            "loader": max(x["peak_rss_mb"]["loaders"] for x in v)},
            "ingest_s": statistics.median(x["ingest_s"] for x in v),
            "after_ingest_s": statistics.median(x["after_ingest_s"] for x in v),
            "first_load_started_s": statistics.median(x["first_load_started_s"] for x in v),
            "pg_copy_floor_s": statistics.median(x["pg_copy_floor_s"] for x in v),
            "x_floor": statistics.median(x["seconds"] / x["pg_copy_floor_s"] for x in v),
            "pg_copy_floor_binary_s": statistics.median(x.get("pg_copy_floor_binary_s", 0) for x in v),
            "x_floor_binary": statistics.median(x["seconds"] / x["pg_copy_floor_binary_s"] for x in v
                                                if x.get("pg_copy_floor_binary_s")) if any(x.get("pg_copy_floor_binary_s") for x in v) else None,
            "objects": v[0]["objects"], "concurrency": v[0]["concurrency"],
            "rows_loaded": v[0]["records"], "runs": len(v)}
def pipelines(tag):
    out = {}
    ing, lod = by.get("sluice_ingest" + tag, []), by.get("sluice_loader_s3" + tag, [])
    if ing and lod:
        secs = [a["seconds"] + b["seconds"] for a, b in zip(ing, lod)]
        out["sluice" + tag] = {"records_per_s": n / statistics.median(secs), "seconds": statistics.median(secs),
            "api_wait_s": statistics.median(a.get("api_wait_s", 0) for a in ing),
            "peak_rss_mb": {"ingest": max(a["peak_rss_mb"] for a in ing), "loader": max(b["peak_rss_mb"] for b in lod)},
            "ingest_s": statistics.median(a["seconds"] for a in ing),
            "loader_s": statistics.median(b["seconds"] for b in lod),
            "pg_copy_floor_s": statistics.median(b["pg_copy_floor_s"] for b in lod),
            "rows_loaded": lod[0]["records"], "runs": len(secs)}
    for name in ("sluice_overlapped", "sluice_overlapped_text"):
        overlapped(out, name + tag)
    for k in ("dlt_rest_api_merge_csv", "dlt_rest_api_merge"):
        v = by.get(k + tag, [])
        if v:
            out[k + tag] = {"records_per_s": statistics.median(x["records_per_s"] for x in v),
                "seconds": statistics.median(x["seconds"] for x in v),
                "peak_rss_mb": max(x["peak_rss_mb"] for x in v),
                "rows_loaded": v[0].get("table_rows"), "runs": len(v)}
    return out
med = {**pipelines(""), **pipelines("_python_mock")}
print(f"# end to end API → S3 → Postgres, N={n}, {sys.argv[3]} rounds (API-bound lines once), medians, {os.cpu_count()} cores, {platform.machine()}")
print(f"{'pipeline':36} {'records/s':>10} {'seconds':>8} {'API wait s':>10} {'peak RSS MB':>22}")
for k, m in sorted(med.items(), key=lambda kv: -kv[1]["records_per_s"]):
    rss = m["peak_rss_mb"]
    rss = f"ingest {rss['ingest']}, loader {rss['loader']}" if isinstance(rss, dict) else f"{rss}"
    api = m.get("api_wait_s", "")
    print(f"{k:36} {m['records_per_s']:>10.0f} {m['seconds']:>8.2f} {api!s:>10} {rss:>22}")
def ratio(a, b):
    return round(med[a]["records_per_s"] / med[b]["records_per_s"], 1) if a in med and b in med else None
s = med.get("sluice")
csv = med.get("dlt_rest_api_merge_csv")
if s and csv:
    print(f"# sluice: ingest {s['ingest_s']:.2f} s + loader {s['loader_s']:.2f} s; Postgres alone COPYs the loaded rows "
          f"into an empty copy of the table in {s['pg_copy_floor_s']:.2f} s, so even a free ingest and a free loader "
          f"would reach at most {csv['seconds'] / s['pg_copy_floor_s']:.1f}x dlt csv on this machine")
o = med.get("sluice_overlapped")
if o:
    print(f"# sluice overlapped: {o['objects']} objects, {o['concurrency']} loaders at once; the first load started at "
          f"{o['first_load_started_s']:.2f} s, the ingest ended at {o['ingest_s']:.2f} s and the last load "
          f"{o['after_ingest_s']:.2f} s after it; {o['x_floor']:.2f}x Postgres' own COPY of the same rows "
          f"(median of each run's ratio; floor {o['pg_copy_floor_s']:.2f} s); "
          f"{o['x_floor_binary'] or 0:.2f}x its binary-format COPY ({o['pg_copy_floor_binary_s']:.2f} s)")
print(json.dumps({"bench": "e2e", "n": n, "ratios": {
    "sluice_overlapped_vs_dlt_csv": ratio("sluice_overlapped", "dlt_rest_api_merge_csv"),
    "sluice_overlapped_vs_sluice_sequential": ratio("sluice_overlapped", "sluice"),
    "sluice_overlapped_binary_vs_text": ratio("sluice_overlapped", "sluice_overlapped_text"),
    "sluice_overlapped_x_postgres_copy": round(o["x_floor"], 2) if o else None,
    "sluice_overlapped_x_postgres_copy_binary": round(o["x_floor_binary"], 2) if o and o["x_floor_binary"] else None,
    "sluice_vs_dlt_csv": ratio("sluice", "dlt_rest_api_merge_csv"),
    "sluice_vs_dlt_merge": ratio("sluice", "dlt_rest_api_merge"),
    "sluice_vs_dlt_csv_python_mock_api_bound": ratio("sluice_python_mock", "dlt_rest_api_merge_csv_python_mock"),
    "postgres_floor_vs_dlt_csv": round(csv["seconds"] / s["pg_copy_floor_s"], 1) if s and csv else None,
}, "medians": med, "raw": [r for runs in by.values() for r in runs]}))
PYEOF
