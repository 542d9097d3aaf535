# Sourced by the bench/*.sh drivers: the baselines and their venv, the bench binary, a work dir.
#   BASELINES  ../shared/baselines   BENCH_N  records (100000)   ROUNDS  rounds (3)
#   BASELINES_VENV  the baselines' venv (set up with setup.sh when missing)
cd "$(dirname "$0")/.."
BASELINES="${BASELINES:-$(cd .. && pwd)/shared/baselines}"
N="${BENCH_N:-100000}"
ROUNDS="${ROUNDS:-3}"
VENV="${BASELINES_VENV:-$HOME/.cache/sluice-baselines-venv}"
PY="$VENV/bin/python"
[ -x "$PY" ] || WITH_AWSWRANGLER=0 "$BASELINES/setup.sh" "$VENV" >/dev/null
cargo build --profile bench-fast -p sluice-bench >&2
BIN=target/bench-fast/sluice-bench
W="$(mktemp -d)"; trap 'rm -rf "$W"' EXIT
RESULTS="$W/results.jsonl"
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 600); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
# The S3 endpoint, sluice's sample API and the Python mock (N records each), each in its own
# process and stopped on exit. Sets S3 (the endpoint's URL), APIP and MOCKP (ports).
start_services() {
  cargo build --profile bench-fast -p sluice-sample-api >&2
  local s3p; s3p=$(free_port); APIP=$(free_port); MOCKP=$(free_port)
  pids=()
  trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$W"' EXIT
  "$BIN" s3 "$W/s3" "$s3p" & pids+=($!)
  target/bench-fast/sluice-sample-api --records "$N" --port "$APIP" 2>/dev/null & pids+=($!)
  "$PY" "$BASELINES/mock_sales_api.py" --n "$N" --port "$MOCKP" 2>/dev/null >/dev/null & pids+=($!)
  wait_http "$s3p"; wait_http "$APIP"; wait_http "$MOCKP"
  S3="http://127.0.0.1:$s3p"
}
# Two versions of the same N generated sales, flattened by sluice: $W/v1.csv, and $W/v2.csv in
# which every row changes (gen_sales.py --version 2).
sales_versions() {
  "$PY" "$BASELINES/gen_sales.py" "$N" "$W/v1.jsonl" >/dev/null
  "$PY" "$BASELINES/gen_sales.py" "$N" "$W/v2.jsonl" --version 2 >/dev/null
  "$BIN" flatten "$W/v1.jsonl" "$W/v1.csv" >/dev/null
  "$BIN" flatten "$W/v2.jsonl" "$W/v2.csv" >/dev/null
}
