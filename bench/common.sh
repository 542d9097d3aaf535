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
