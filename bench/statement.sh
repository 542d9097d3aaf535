#!/usr/bin/env bash
# The upsert statement alone (issue 16, target 1): the Python baseline's plain
# `INSERT … ON CONFLICT DO UPDATE` against it with sluice's no-op test, with sluice's row count,
# and with both (sluice's statement), on 100k generated sales whose every row changes (not a test).
#
#   make bench-statement               # N=100000, ROUNDS=4
set -euo pipefail
: "${DATABASE_URL:?set DATABASE_URL (make bench-statement starts Postgres if needed)}"
ROUNDS="${ROUNDS:-4}"
. "$(dirname "$0")/common.sh"
sales_versions
"$PY" bench/upsert_statement.py "$DATABASE_URL" "$W/v1.csv" "$W/v2.csv" "$ROUNDS" \
  python,where,returning,sluice "$BASELINES"
