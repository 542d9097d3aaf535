"""What the bench/*.sh drivers share when they report: their results file read back.

Each contender prints one JSON line a run; the drivers collect them into one file and report
medians of the runs of each contender, side by side.
"""
import json
import statistics


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


def medians(runs_by, median=(), peak=(), first=()):
    """Per contender of `runs_by` (what `by_contender` returns): the median over its runs of
    each `median` field, the largest of each `peak` field (a memory peak is a maximum), the
    first run's value of each `first` field (one that every run repeats), and "runs". A field
    that a contender's runs lack is left out of its entry."""
    out = {}
    for name, runs in runs_by.items():
        m = {"runs": len(runs)}
        for fields, pick in ((median, statistics.median), (peak, max)):
            for f in fields:
                values = [r[f] for r in runs if f in r]
                if values:
                    m[f] = pick(values)
        m.update({f: runs[0][f] for f in first if f in runs[0]})
        out[name] = m
    return out
