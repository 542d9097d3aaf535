"""What the bench/*.sh drivers share when they report: their results file read back.

Each contender prints one JSON line a run; the drivers collect them into one file and report
medians of the runs of each contender, side by side.
"""
import json


def by_contender(path, name=lambda r: r["baseline"]):
    """The runs in the results file at `path`, grouped by contender (`name` of a run: its
    "baseline" field unless told otherwise), in the order they first appear."""
    runs = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                runs.setdefault(name(r), []).append(r)
    return runs
