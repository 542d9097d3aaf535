#!/usr/bin/env bash
# The collection API under load, side by side in one run (not a test):
#
#   make bench-api                     # 10 s per run, 3 rounds
#   SECONDS_PER_RUN=3 ROUNDS=1 bench/api.sh   # smoke run
#
# Contenders, each a fresh server process per run, alternating order, medians over ROUNDS:
#   sluice    target/bench-fast/sluice-api (the container binary: the same router as Lambda)
#   fastapi   ../shared/baselines/collect_fastapi.py (uvicorn, uvloop, httptools, 2 workers)
# Both store into the same local S3 endpoint (its own process). Workloads, with bodies from
# gen_unicorns.py, loaded by ../shared/baselines/collect_load.sh (wrk, 32 connections):
#   one        POST /unicorns, one record a request
#   batch100   POST /unicorns/batch, 100 records a request
#   validate   POST /unicorns without storing (API_VALIDATE_ONLY=true / --no-s3)
#   health     GET /health (bench/health_load.lua): the HTTP floor, what a route that does
#              nothing reaches on this machine with wrk beside it
# Reported: requests/s, p99 latency, the server's peak RSS (VmHWM of its process tree), CPU time
# per request of the server and of the S3 endpoint (where the time goes), and cold start: process
# start → first 201.
set -euo pipefail
. "$(dirname "$0")/common.sh"
SECS="${SECONDS_PER_RUN:-10}"
command -v wrk >/dev/null || {
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get install -y --no-install-recommends wrk >&2
}
cargo build --profile bench-fast -p sluice-api --bin sluice-api >&2
API=target/bench-fast/sluice-api
s3p=$(free_port)
# The endpoint's files in memory where there is a tmpfs: disk writeback made req/s swing 5x
# between identical runs, and S3's own disks are not what this compares.
s3root="$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)"
mkdir -p "$s3root/sluice-bench"
"$BIN" s3 "$s3root" "$s3p" & s3pid=$!
trap 'kill "$s3pid" 2>/dev/null; rm -rf "$W" "$s3root"' EXIT
wait_http "$s3p"
# The endpoint's test credentials (sluice_testkit::S3_ACCESS_KEY / S3_SECRET_KEY).
export S3_ENDPOINT_URL="http://127.0.0.1:$s3p" AWS_ACCESS_KEY_ID=sluice-test \
  AWS_SECRET_ACCESS_KEY=sluice-test-secret AWS_REGION=us-east-1
"$PY" "$BASELINES/gen_unicorns.py" 10000 "$W/one.jsonl" >/dev/null
"$PY" "$BASELINES/gen_unicorns.py" 1000 "$W/batch100.jsonl" --batch 100 >/dev/null

# start CONTENDER WORKLOAD PORT: the server in the background; sets SERVER.
start() {
  local store=(--bucket sluice-bench) env=(BUCKET=sluice-bench)
  case "$2" in validate | health) store=(--no-s3) env=(API_VALIDATE_ONLY=true) ;; esac
  case "$1" in
    sluice) env "${env[@]}" PORT="$3" DATASETS=datasets RUST_LOG=warn "$API" >/dev/null 2>&1 & ;;
    fastapi) "$PY" "$BASELINES/collect_fastapi.py" --port "$3" --workers 2 "${store[@]}" >/dev/null 2>&1 & ;;
  esac
  SERVER=$!
}

# Peak RSS (MB) of a process and its descendants, summed.
tree_rss_mb() {
  local pids=("$1") kb=0 p
  for p in $(pgrep -P "$1" || true); do pids+=("$p"); done
  for p in "${pids[@]}"; do
    kb=$((kb + $(awk '/VmHWM/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)))
  done
  awk -v kb="$kb" 'BEGIN { printf "%.1f", kb / 1024 }'
}

# CPU time (clock ticks, user + system) of a process and its children, summed.
tree_cpu_ticks() {
  local pids=("$1") t=0 p
  for p in $(pgrep -P "$1" || true); do pids+=("$p"); done
  for p in "${pids[@]}"; do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}

# Process start → first 201 of POST /unicorns, in ms (polled every millisecond).
cold_start_ms() {
  "$PY" - "$1" "$2" "$(head -1 "$W/one.jsonl")" <<'PYEOF'
import http.client, os, subprocess, sys, time
contender, port, body = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
if contender == "sluice":
    env = dict(os.environ, BUCKET="sluice-bench", PORT=str(port), DATASETS="datasets", RUST_LOG="warn")
    cmd = ["target/bench-fast/sluice-api"]
else:
    env = dict(os.environ)
    cmd = [sys.executable, os.environ["BASELINES"] + "/collect_fastapi.py", "--port", str(port),
           "--workers", "2", "--bucket", "sluice-bench"]
t0 = time.perf_counter()
p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    for _ in range(30000):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("POST", "/unicorns", body, {"content-type": "application/json"})
            status = c.getresponse().status
            if status == 201:
                break
            sys.exit(f"{contender}: {status} to the first POST")
        except OSError:
            time.sleep(0.001)
    else:
        sys.exit(f"{contender}: no answer in 30 s")
    print(round((time.perf_counter() - t0) * 1000, 1))
finally:
    p.terminate(); p.wait()
PYEOF
}

export BASELINES
for r in $(seq 1 "$ROUNDS"); do
  order=(sluice fastapi); [ $((r % 2)) = 0 ] && order=(fastapi sluice)
  for c in "${order[@]}"; do
    ms=$(cold_start_ms "$c" "$(free_port)")
    echo "{\"contender\": \"$c\", \"workload\": \"cold_start\", \"ms\": $ms}"
    for w in one batch100 validate health; do
      port=$(free_port)
      start "$c" "$w" "$port"
      wait_http "$port"
      case "$w" in
        batch100) url="http://127.0.0.1:$port/unicorns/batch"; bodies="$W/batch100.jsonl" ;;
        health) url="http://127.0.0.1:$port/health"; bodies="" ;;
        *) url="http://127.0.0.1:$port/unicorns"; bodies="$W/one.jsonl" ;;
      esac
      cpu0=$(tree_cpu_ticks "$SERVER"); s3cpu0=$(tree_cpu_ticks "$s3pid")
      if [ "$w" = health ]; then
        load=$(wrk -t1 -c32 -d"${SECS}s" --latency -s bench/health_load.lua "$url" | tail -n 1)
      else
        load=$("$BASELINES/collect_load.sh" "$url" "$bodies" "$SECS" 32)
      fi
      cpu=$(($(tree_cpu_ticks "$SERVER") - cpu0)); s3cpu=$(($(tree_cpu_ticks "$s3pid") - s3cpu0))
      rss=$(tree_rss_mb "$SERVER")
      kill "$SERVER"; wait "$SERVER" 2>/dev/null || true
      echo "{\"contender\": \"$c\", \"workload\": \"$w\", \"rss_mb\": $rss, \"cpu_ticks\": $cpu, \"s3_cpu_ticks\": $s3cpu, \"load\": $load}"
    done
  done
done >"$RESULTS"

bytes=$(stat -c %s "$API")
zipped=$("$PY" -c 'import io, sys, zipfile; b = io.BytesIO(); z = zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED, compresslevel=9); z.write(sys.argv[1], "bootstrap"); z.close(); print(len(b.getvalue()))' "$API")
"$PY" - "$RESULTS" "$ROUNDS" "$SECS" "$bytes" "$zipped" <<'PYEOF'
import json, os, platform, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rounds, secs, size, zipped = int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
med = {}
for r in rows:
    med.setdefault((r["contender"], r["workload"]), []).append(r)
def m(c, w, f):
    return statistics.median(f(r) for r in med[(c, w)])
print(f"# collection API, {rounds} round(s) of {secs} s, 32 connections, medians, "
      f"{os.cpu_count()} cores, {platform.machine()}")
print(f"{'workload':10} {'contender':8} {'req/s':>9} {'p99 ms':>8} {'non-2xx':>8} {'peak RSS MB':>12} "
      f"{'server CPU µs/req':>18} {'S3 CPU µs/req':>14}")
tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
def per_req(key):
    return lambda r: r[key] * tick_us / max(r["load"]["requests"], 1)
ratios = {}
for w in ["one", "batch100", "validate", "health"]:
    for c in ["sluice", "fastapi"]:
        print(f"{w:10} {c:8} {m(c, w, lambda r: r['load']['rps']):>9.0f} "
              f"{m(c, w, lambda r: r['load']['p99_ms']):>8.2f} "
              f"{m(c, w, lambda r: r['load']['non_2xx']):>8.0f} {m(c, w, lambda r: r['rss_mb']):>12.1f} "
              f"{m(c, w, per_req('cpu_ticks')):>18.0f} {m(c, w, per_req('s3_cpu_ticks')):>14.0f}")
    ratios[w] = {
        "rps": round(m("sluice", w, lambda r: r["load"]["rps"]) / m("fastapi", w, lambda r: r["load"]["rps"]), 1),
        "p99_fraction": round(m("sluice", w, lambda r: r["load"]["p99_ms"]) / m("fastapi", w, lambda r: r["load"]["p99_ms"]), 3),
        "rss_fraction": round(m("sluice", w, lambda r: r["rss_mb"]) / m("fastapi", w, lambda r: r["rss_mb"]), 3),
    }
cold = {c: m(c, "cold_start", lambda r: r["ms"]) for c in ["sluice", "fastapi"]}
print(f"cold start (process start → first 201): sluice {cold['sluice']:.1f} ms, fastapi {cold['fastapi']:.1f} ms")
print(f"sluice-api binary {size / 1e6:.1f} MB, zipped {zipped / 1e6:.1f} MB (bench-fast, {platform.machine()})")
for w, r in ratios.items():
    print(f"{w:10} sluice/fastapi: {r['rps']}x req/s, p99 {r['p99_fraction']}x, RSS {r['rss_fraction']}x")
print(json.dumps({"bench": "api", "ratios": ratios, "cold_start_ms": cold,
                  "binary_bytes": size, "zip_bytes": zipped, "raw": rows}))
PYEOF
