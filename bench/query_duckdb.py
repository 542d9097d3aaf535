#!/usr/bin/env python3
"""DuckDB over the lake's Parquet files, timed in-process: bench/query.sh's peer of sluice query.

  query_duckdb.py ROOT NAME SQL

ROOT is a directory laid out as the bucket. The SQL reads `unicorns_objects` (the objects, dt from
the keys, as Hive partitions) or `unicorns` (the same deduplicating view sluice's catalog
defines). Prints one JSON line: the query's seconds (connect, views, query, rows fetched), its
row count and the process's peak RSS.
"""
import json
import resource
import sys
import time

import duckdb


def main() -> None:
    root, name, sql = sys.argv[1:4]
    t0 = time.perf_counter()
    con = duckdb.connect()
    glob = f"{root}/lake/unicorns/*/*.parquet".replace("'", "''")
    con.execute(
        f"CREATE VIEW unicorns_objects AS SELECT * FROM read_parquet('{glob}', hive_partitioning = true)"
    )
    con.execute(
        "CREATE VIEW unicorns AS SELECT * EXCLUDE (_copy) FROM ("
        "SELECT *, row_number() OVER (PARTITION BY dt, _event_id, _row) AS _copy FROM unicorns_objects)"
        " WHERE _copy = 1"
    )
    rows = con.execute(sql).fetchall()
    secs = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"baseline": name, "seconds": round(secs, 4), "rows": len(rows),
                      "peak_rss_mb": round(rss, 1)}))


if __name__ == "__main__":
    main()
