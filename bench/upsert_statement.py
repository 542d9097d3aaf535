"""The upsert statement alone, A/B: the Python baseline's plain `INSERT … ON CONFLICT DO UPDATE`
against what sluice's statement adds to it (not a test; `bench/statement.sh` runs it).

    python bench/upsert_statement.py DSN V1.csv V2.csv ROUNDS python,where,returning,sluice

Each run rebuilds the table from V1 (the baseline's DDL and types), vacuums it and takes a
CHECKPOINT (so every run writes the same full-page images), stages V2 in a temporary table like
the table, and times the one statement; then commits. Order reversed every other round. Prints a
line per variant (median seconds, each run's seconds and MB of WAL) and one JSON line.
"""
import csv
import json
import statistics
import sys
import time

import psycopg


def main(dsn, v1, v2, rounds, variants, baselines):
    sys.path.insert(0, baselines)
    from upsert_python import Plan, _copy_file, q

    cols = next(csv.reader(open(v1, encoding="utf-8")))
    key = "purchase_transaction"
    p = Plan("bench_statement", cols, key)
    nonkey = [c for c in cols if c != key]
    sets = ", ".join(f"{q(c)} = EXCLUDED.{q(c)}" for c in nonkey)
    cond = ("ROW(" + ", ".join(f"t.{q(c)}" for c in nonkey) + ") IS DISTINCT FROM ROW("
            + ", ".join(f"EXCLUDED.{q(c)}" for c in nonkey) + ")")
    ins = (f"INSERT INTO {p.qt} AS t ({p.collist}) SELECT {p.collist} FROM s "
           f"ON CONFLICT ({p.qk}) DO UPDATE SET {sets}")

    def counted(body):
        return (f"WITH up AS ({body} RETURNING (xmax = 0) AS inserted) "
                "SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up")

    sql = {
        "python": ins,
        "where": f"{ins} WHERE {cond}",
        "returning": counted(ins),
        "sluice": counted(f"{ins} WHERE {cond}"),
    }
    runs = {v: [] for v in variants}
    for r in range(rounds):
        for v in variants if r % 2 == 0 else variants[::-1]:
            with psycopg.connect(dsn, autocommit=True) as c:
                c.execute(f"DROP TABLE IF EXISTS {p.qt}")
                c.execute(p.ddl)
                with c.cursor() as cur:
                    _copy_file(cur, p.qt, p.collist, v1)
                c.execute(f"VACUUM ANALYZE {p.qt}")
                c.execute("CHECKPOINT")
            with psycopg.connect(dsn) as c, c.cursor() as cur:
                cur.execute(f"CREATE TEMP TABLE s (LIKE {p.qt} INCLUDING DEFAULTS) ON COMMIT DROP")
                _copy_file(cur, "s", p.collist, v2)
                cur.execute("ANALYZE s")
                lsn = cur.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
                t0 = time.perf_counter()
                cur.execute(sql[v])
                secs = time.perf_counter() - t0
                wal = cur.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", (lsn,)).fetchone()[0]
                c.commit()
            runs[v].append({"seconds": round(secs, 3), "wal_mb": round(int(wal) / 1e6, 1)})
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"DROP TABLE IF EXISTS {p.qt}")
    med = {v: statistics.median(x["seconds"] for x in runs[v]) for v in variants}
    for v in variants:
        print(f"# {v:10} {med[v]:.3f} s  runs {runs[v]}")
    print(json.dumps({"bench": "statement", "rounds": rounds, "median_s": med,
                      "x_python": {v: round(med[v] / med["python"], 3) for v in variants if "python" in med},
                      "runs": runs}))


if __name__ == "__main__":
    a = sys.argv
    main(a[1], a[2], a[3], int(a[4]), a[5].split(","), a[6])
