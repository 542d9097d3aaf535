"""JSON Lines of unicorns -> one Snappy Parquet file with pyarrow: bench/parquet.sh's peer.

  parquet_pyarrow.py IN.jsonl OUT.parquet --method pandas|arrow-json

pandas      the way awswrangler's s3.to_parquet gets there: records parsed with json, a pandas
            DataFrame, the date-time column converted, then pyarrow.Table.from_pandas and
            pyarrow.parquet.write_table.
arrow-json  pyarrow's own multithreaded C++ JSON reader straight into an Arrow table: the
            fastest pyarrow path (no validation, the types inferred).

Prints one JSON line with the fields sluice-bench prints (records/s, peak RSS).
"""
import argparse
import json
import os
import resource
import time

import pandas as pd
import pyarrow as pa
import pyarrow.json as pj
import pyarrow.parquet as pq


def main():
    p = argparse.ArgumentParser()
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--method", choices=["pandas", "arrow-json"], required=True)
    a = p.parse_args()
    t0 = time.perf_counter()
    if a.method == "pandas":
        with open(a.input, encoding="utf-8") as f:
            records = [json.loads(line) for line in f if line.strip()]
        frame = pd.DataFrame.from_records(records)
        frame["sighted_at"] = pd.to_datetime(frame["sighted_at"], utc=True, format="ISO8601")
        table = pa.Table.from_pandas(frame, preserve_index=False)
    else:
        table = pj.read_json(a.input)
    pq.write_table(table, a.output, compression="snappy")
    secs = time.perf_counter() - t0
    mb = os.path.getsize(a.input) / 1e6
    print(json.dumps({
        "baseline": f"pyarrow_{a.method.replace('-', '_')}",
        "records": table.num_rows,
        "seconds": round(secs, 4),
        "records_per_s": round(table.num_rows / secs),
        "input_mb": round(mb, 2),
        "mb_per_s": round(mb / secs, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "bytes": os.path.getsize(a.output),
    }))


if __name__ == "__main__":
    main()
