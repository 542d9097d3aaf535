#!/usr/bin/env bash
# Parquet writes: sluice vs pyarrow on the same unicorns, side by side in one run (not a test).
#
#   make bench-parquet                 # N=100000 unicorns, 3 rounds
#   BENCH_N=10000 ROUNDS=1 bench/parquet.sh   # smoke run
#
# Contenders, each a fresh process per run, alternating order, medians over ROUNDS; each reads
# the same JSON Lines file (gen_unicorns.py) and writes one Snappy Parquet file:
#   sluice_parquet      sluice-bench parquet: every record validated as the API validates a
#                       request, then the API's lake rows and Parquet writer
#   pyarrow_pandas      json + pandas DataFrame + pyarrow, as awswrangler's to_parquet does
#   pyarrow_arrow_json  pyarrow's C++ JSON reader straight to Arrow (no validation)
# Reported: records/s, peak RSS, the file's size, and sluice's ratios.
set -euo pipefail
. "$(dirname "$0")/common.sh"
PA="$(scripts/venv pyarrow scripts/pyarrow-requirements.txt)/bin/python"
"$PY" "$BASELINES/gen_unicorns.py" "$N" "$W/in.jsonl" >/dev/null
for r in $(seq 1 "$ROUNDS"); do
  run=(sluice pandas arrow)
  [ $((r % 2)) = 0 ] && run=(arrow pandas sluice)
  for c in "${run[@]}"; do
    case "$c" in
      sluice) "$BIN" parquet datasets/unicorns.toml "$W/in.jsonl" "$W/s.parquet" ;;
      pandas) "$PA" bench/parquet_pyarrow.py "$W/in.jsonl" "$W/p.parquet" --method pandas ;;
      arrow) "$PA" bench/parquet_pyarrow.py "$W/in.jsonl" "$W/a.parquet" --method arrow-json ;;
    esac
  done
done >"$RESULTS"
"$PY" - "$RESULTS" "$N" "$ROUNDS" <<'PYEOF'
import json, os, platform, sys
sys.path.insert(0, "bench")
from results import by_contender, medians
by = by_contender(sys.argv[1])
med = medians(by, median=("records_per_s", "bytes"), peak=("peak_rss_mb",))
s = med["sluice_parquet"]
print(f"# JSON Lines -> Parquet, N={sys.argv[2]} unicorns, {sys.argv[3]} rounds, medians, "
      f"{os.cpu_count()} cores, {platform.machine()}")
print(f"{'contender':20} {'records/s':>11} {'peak RSS MB':>12} {'file MB':>8} {'sluice × rec/s':>15} {'sluice RSS ÷':>13}")
for k, m in sorted(med.items(), key=lambda kv: -kv[1]["records_per_s"]):
    print(f"{k:20} {m['records_per_s']:>11.0f} {m['peak_rss_mb']:>12.1f} {m['bytes'] / 1e6:>8.2f} "
          f"{s['records_per_s'] / m['records_per_s']:>15.2f} {s['peak_rss_mb'] / m['peak_rss_mb']:>13.2f}")
print(json.dumps({"bench": "parquet", "n": int(sys.argv[2]), "medians": med}))
PYEOF
