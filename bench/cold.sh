#!/usr/bin/env bash
# Cold start and package size of the four Lambda functions (not a test):
#
#   make bench-cold                  # 20 rounds
#   ROUNDS=5 ZIPS=0 bench/cold.sh    # quick: no arm64 package build
#
# Cold start: each function's x86_64 release binary (fat LTO, built on its own as deployed: see
# scripts/build-lambda), started as Lambda starts it, against bench/cold_start.py's stand-in for
# the Lambda Runtime API: process start →
# its first poll for an event ("ready"), and for sluice-api process start → its answer to a first
# API Gateway `GET /health` event. Configured as on AWS but with everything from the environment:
# credentials in variables, no Secrets Manager read (on AWS one is a network round trip that
# the ingest and the loader make at start when their secrets come by ARN; the loader's Postgres
# pool connects lazily, at the first event). Medians and the slowest run over ROUNDS.
#
# Package size: `make build-lambda`'s arm64 zips (cargo-lambda, what SAM deploys), unless ZIPS=0.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-20}"
FNS=(sluice-ingest sluice-loader sluice-api sluice-compact)
W="$(mktemp -d)"; trap 'rm -rf "$W"' EXIT
# Each on its own (a later build of another function may relink target/release's copy).
for f in "${FNS[@]}"; do
  cargo build --release -p "$f" --bin "$f" >&2
  cp "target/release/$f" "$W/$f"
done
if [ "${ZIPS:-1}" != 0 ]; then
  scripts/build-lambda --output-format zip >&2
fi

export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE AWS_SECRET_ACCESS_KEY=bench AWS_SESSION_TOKEN=bench \
  AWS_REGION=us-east-1 BUCKET=sluice-bench DATASETS=datasets RUST_LOG=info \
  DATABASE_URL=postgres://sluice@127.0.0.1:5432/sluice \
  HOTMART_CLIENT_ID=bench HOTMART_CLIENT_SECRET=bench HOTMART_BASIC="Basic YmVuY2g6YmVuY2g="
args=(); for f in "${FNS[@]}"; do args+=("$f=$W/$f"); done
python3 bench/cold_start.py "$ROUNDS" "${args[@]}" >"$W/runs.jsonl"

python3 - "$W" "$ROUNDS" "${FNS[@]}" <<'PYEOF'
import io, json, os, platform, statistics, sys, zipfile
w, rounds, fns = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
path = f"{w}/runs.jsonl"
runs = [json.loads(l) for l in open(path)]
print(f"cold start, {rounds} rounds, {platform.machine()} release binaries, medians (slowest):")
def zipped(p):
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.write(p, "bootstrap")
    return len(b.getvalue())
print("| function | ready ms | answered ms | x86_64 binary MB | zipped | arm64 bootstrap MB | zipped (the package) |")
print("|---|---:|---:|---:|---:|---:|---:|")
summary = {}
for f in fns:
    mine = [r for r in runs if r["binary"] == f]
    ready = [r["ready_ms"] for r in mine]
    answered = [r["answered_ms"] for r in mine if "answered_ms" in r]
    size, xz = os.path.getsize(f"{w}/{f}"), zipped(f"{w}/{f}")
    package = f"target/lambda/{f}/bootstrap.zip"
    arm = z = None
    if os.path.exists(package):
        z = os.path.getsize(package)
        arm = zipfile.ZipFile(package).getinfo("bootstrap").file_size
    mb = lambda b: "—" if b is None else f"{b / 1e6:.2f}"
    ans = f"{statistics.median(answered):.1f} ({max(answered):.1f})" if answered else "—"
    print(f"| {f} | {statistics.median(ready):.1f} ({max(ready):.1f}) | {ans} | {mb(size)} | {mb(xz)} | {mb(arm)} | {mb(z)} |")
    summary[f] = {"ready_ms": statistics.median(ready), "ready_max_ms": max(ready),
                  "answered_ms": statistics.median(answered) if answered else None,
                  "binary_bytes": size, "x86_64_zip_bytes": xz, "arm64_bytes": arm, "zip_bytes": z}
print(json.dumps({"bench": "cold", "rounds": rounds, "functions": summary}))
PYEOF
