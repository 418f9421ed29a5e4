"""The taskmesh / Ray table of scripts/compare-ray.sh, in markdown.

Run with: `python3 benches/ray/ratios.py TASKMESH.jsonl RAY.jsonl`

Reads the JSON lines of taskmesh's bench and of benches/ray/workloads.py
(same field names, medians of the same number of runs, taken one after the
other in one run) and prints one row per figure. The ratio is oriented so
that above 1 means taskmesh is better: "faster" for times and rates, "less"
for memory. Figures missing on either side are shown as "—".
"""

import json
import re
import sys

# (row label, workload, field, unit, lower is better)
ROWS = [
    ("W1 p50", "W1", "p50_ms", "ms", True),
    ("W1 p99", "W1", "p99_ms", "ms", True),
    # W2 rows, one per batch size found, go here.
    ("W2 peak RSS sum (10k; largest if quick)", "W2", "peak_rss_sum_mib", "MiB", True),
    ("W2 peak RSS sum (100k)", "W2", "peak_rss_sum_mib_100k", "MiB", True),
    ("W3 per hop", "W3", "per_hop_ms", "ms", True),
    ("W4 1 → 500 → 1", "W4", "wall_s", "s", True),
    ("W5 30 × 100 ms", "W5", "wall_s", "s", True),
    ("W6 cold start", "W6", "cold_start_s", "s", True),
]


def read_lines(path):
    """The workload lines of a JSON-lines file, by workload; other lines are
    skipped."""
    by_workload = {}
    with open(path) as f:
        for row in f:
            try:
                line = json.loads(row)
            except ValueError:
                continue
            if isinstance(line, dict) and "workload" in line:
                by_workload[line["workload"]] = line
    return by_workload


def w2_rows(*sides):
    """One row per `tasks_per_s_<size>` figure on either side, by size."""
    sizes = set()
    for side in sides:
        for key in side.get("W2", {}):
            m = re.fullmatch(r"tasks_per_s_(\d+)(k?)", key)
            if m:
                sizes.add((int(m[1]) * (1000 if m[2] else 1), m[1] + m[2]))
    return [(f"W2 {label}", "W2", f"tasks_per_s_{label}", "tasks/s", False)
            for _, label in sorted(sizes)]


def fmt(value, unit):
    if value is None:
        return "—"
    if unit == "ms":
        return f"{value:.2f} ms" if value < 100 else f"{value:,.0f} ms"
    if unit == "s":
        return f"{value:.3f} s"
    return f"{value:,.0f} {unit}"


def ratio(ours, theirs, unit, lower_is_better):
    """"N.N× faster" / "N.N× slower" (or less / more memory)."""
    if not ours or not theirs:
        return "—"
    r = theirs / ours if lower_is_better else ours / theirs
    better, worse = ("less", "more") if unit == "MiB" else ("faster", "slower")
    return f"{r:.1f}× {better}" if r >= 1 else f"{1 / r:.1f}× {worse}"


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: ratios.py TASKMESH.jsonl RAY.jsonl")
    ours, theirs = read_lines(sys.argv[1]), read_lines(sys.argv[2])
    version = next((x["ray_version"] for x in theirs.values() if "ray_version" in x), "")
    rows = ROWS[:2] + w2_rows(ours, theirs) + ROWS[2:]
    print(f"| workload | taskmesh | Ray {version} | taskmesh / Ray |")
    print("|---|---:|---:|---|")
    for label, workload, field, unit, lower in rows:
        a = ours.get(workload, {}).get(field)
        b = theirs.get(workload, {}).get(field)
        if a is None and b is None:
            continue
        print(f"| {label} | {fmt(a, unit)} | {fmt(b, unit)} | {ratio(a, b, unit, lower)} |")
    runs = {x.get("runs") for x in [*ours.values(), *theirs.values()]} - {None}
    runs = "/".join(map(str, sorted(runs)))
    print(f"\nMedians of {runs} run(s) each, taken one after the other.")


if __name__ == "__main__":
    main()
