"""Ray's side of the comparison: W1–W6 of shared/benchmarks.md on Ray.

Run with: `target/ray-venv/bin/python benches/ray/workloads.py [--quick]
[--runs N] [W1 ... W6]` (usually through `scripts/compare-ray.sh`, which
makes the virtual environment and runs taskmesh's bench first).

What is measured, and how it matches taskmesh's bench (benches/workloads.rs):

- The cluster: a local Ray started by this process (the driver, which is
  also the client) with `num_cpus=3`, so 3 tasks run at once like taskmesh's
  3 single-slot worker processes; on 127.0.0.1, without the dashboard, with
  Ray's default token authentication (the token is passed in the
  environment, so nothing is written to ~/.ray) and a temporary directory
  removed at the end.
- The task bodies of benchmarks.md: identity(x)=x, inc(x)=x+1, prep()=1,
  mid(p,i)=p+i, agg(xs)=sum(xs), sleep(i) (100 ms, returns i). Dependencies
  are passed as ObjectRefs and submitted up front: results flow between
  tasks without the client.
- Every clock starts right before the first submit and stops once the
  client holds the checked final value (W2: n(n-1)/2, W3: 100, W4: 125250,
  W5: the sum of 0..29).
- Procedure: warm-up untimed (100 tasks at once, then 10 in sequence), then
  W1–W5 `--runs` times each (default 3; `--quick`: 1 run and W2 at 100 and
  1,000 tasks instead of 1,000, 10,000 and 100,000) on the same cluster;
  the peak RSS (VmHWM) of the driver and of every process descending from
  it (the whole Ray session) is reset before each W2 size and summed after
  its runs, as taskmesh's bench does. Then the cluster is
  shut down and W6 launches a fresh Python process per run that imports ray,
  starts a cluster and gets identity(42), timed from the launch.

Prints one JSON line per workload on stdout, with the field names of
taskmesh's bench (`median`, `min`, `max` of the primary figure, each figure
by name with `_min`/`_max`, every run under `samples`); progress on stderr.
"""

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time

import ray

from procs import peak_rss_mib, reset_peak_rss

CPUS = 3
ANSWER = 42


@ray.remote
def identity(x):
    return x


@ray.remote
def inc(x):
    return x + 1


@ray.remote
def prep():
    return 1


@ray.remote
def mid(p, i):
    return p + i


@ray.remote
def agg(*xs):
    # The 500 ObjectRefs are passed as arguments (not in one list) so that Ray
    # resolves them before the task runs.
    return sum(xs)


@ray.remote
def sleep(i):
    time.sleep(0.1)
    return i


# ---- running Ray ---------------------------------------------------------


def start_ray(temp_dir):
    """Starts a fresh local cluster of `CPUS` slots, writing under `temp_dir`."""
    # A token in the environment keeps Ray's default for a new local cluster
    # (token authentication, which ray.init turns on when RAY_AUTH_MODE is
    # unset) without writing ~/.ray/auth_token; Ray's processes inherit it.
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(
        address="local",
        num_cpus=CPUS,
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",
        _temp_dir=temp_dir,
    )


def results_to_stdout_only():
    """Returns a file on the real stdout for the JSON lines, and points fd 1
    at stderr, so that nothing else (Ray's logs, its child processes) can
    write to the results."""
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    return out


def say(msg):
    print(msg, file=sys.stderr, flush=True)


def check(ok, msg):
    """A checked final value (not `assert`, which `python -O` drops)."""
    if not ok:
        raise RuntimeError(msg)


# ---- figures and lines ---------------------------------------------------


def nearest_rank(sorted_xs, p):
    """Nearest-rank percentile: p99 of 200 samples is the 198th."""
    rank = max(1, -(-p * len(sorted_xs) // 100))
    return sorted_xs[min(rank, len(sorted_xs)) - 1]


def summary(xs):
    v = sorted(xs)
    n = len(v)
    median = v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2
    return median, v[0], v[-1]


def rounded(x):
    """As taskmesh rounds: 2 decimals from 100 up, else 4."""
    return round(x, 2) if abs(x) >= 100 else round(x, 4)


class Line:
    """One workload's JSON line, shaped like taskmesh's `util::Line`."""

    def __init__(self, workload, runs, primary, values):
        median, lo, hi = summary(values)
        self.fields = {
            "workload": workload,
            "system": "ray",
            "ray_version": ray.__version__,
            "runs": runs,
            "figure": primary,
            "median": rounded(median),
            "min": rounded(lo),
            "max": rounded(hi),
        }
        self.samples = {}
        self.figure(primary, values)

    def figure(self, name, values):
        median, lo, hi = summary(values)
        self.fields[name] = rounded(median)
        self.fields[f"{name}_min"] = rounded(lo)
        self.fields[f"{name}_max"] = rounded(hi)
        self.samples[name] = [rounded(x) for x in values]
        return self

    def with_(self, name, value):
        self.fields[name] = value
        return self

    def print(self, out):
        out.write(json.dumps({**self.fields, "samples": self.samples}) + "\n")


# ---- W1-W5 on one cluster ------------------------------------------------


def warm_up():
    """100 tasks at once, then 10 in sequence, untimed."""
    values = ray.get([identity.remote(i) for i in range(100)])
    check(values == list(range(100)), "warm-up: wrong values")
    for i in range(10):
        check(ray.get(identity.remote(i)) == i, "warm-up: wrong value")


def w1(plan):
    n, p50, p99, mean = 200, [], [], []
    for run in range(plan.runs):
        lat = []
        for i in range(n):
            t = time.perf_counter()
            v = ray.get(identity.remote(i))
            check(v == i, "W1: wrong value")
            lat.append((time.perf_counter() - t) * 1e3)
        mean.append(sum(lat) / n)
        lat.sort()
        p50.append(nearest_rank(lat, 50))
        p99.append(nearest_rank(lat, 99))
        say(f"[W1] run {run + 1}/{plan.runs}: p50 {p50[-1]:.3f} ms, "
            f"p99 {p99[-1]:.3f} ms, max {lat[-1]:.3f} ms")
    return (Line("W1", plan.runs, "p50_ms", p50)
            .figure("p99_ms", p99).figure("mean_ms", mean).with_("tasks", n))


def w2_run(n):
    """n independent tasks at once; returns tasks/s."""
    t = time.perf_counter()
    total = sum(ray.get([identity.remote(i) for i in range(n)]))
    secs = time.perf_counter() - t
    check(total == n * (n - 1) // 2, f"W2: sum {total} != n(n-1)/2")
    return n / secs


def label(n):
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


def w2(plan):
    """Tasks/s for each size; the headline is 10k (or the largest). The
    peak RSS of the whole session is reset before each size and read after
    its runs, as taskmesh's bench does."""
    by_size, rss = {}, {}
    for n in plan.w2_sizes:
        reset_peak_rss()
        rates = []
        for run in range(plan.runs):
            rates.append(w2_run(n))
            say(f"[W2] {n} tasks, run {run + 1}/{plan.runs}: {rates[-1]:.0f} tasks/s")
        by_size[f"tasks_per_s_{label(n)}"] = rates
        rss[label(n)] = peak_rss_mib()
    main = "tasks_per_s_10k" if "tasks_per_s_10k" in by_size else list(by_size)[-1]
    main_size = main[len("tasks_per_s_"):]
    line = Line("W2", plan.runs, main, by_size.pop(main))
    for name, rates in by_size.items():
        line.figure(name, rates)
    for size, peaks in rss.items():
        line.with_(f"peak_rss_sum_mib_{size}", round(sum(peaks.values()), 4))
    peaks = rss[main_size]
    line.with_("peak_rss_sum_mib", round(sum(peaks.values()), 4))
    line.with_("peak_rss_sum_of", main_size)
    line.with_("peak_rss_mib", {k: round(v, 4) for k, v in peaks.items()})
    line.with_("rss_method", f"sum of VmHWM of the driver and its {len(peaks) - 1} "
               "descendant processes (the whole Ray session) over each size's runs, "
               "reset before each size; pages shared between processes count in each")
    return line


def w3(plan):
    n, total, hop = 100, [], []
    for run in range(plan.runs):
        t = time.perf_counter()
        ref = inc.remote(0)
        for _ in range(n - 1):
            ref = inc.remote(ref)
        v = ray.get(ref)
        secs = time.perf_counter() - t
        check(v == n, f"W3: final value {v} is not {n}")
        total.append(secs)
        hop.append(secs * 1e3 / n)
        say(f"[W3] run {run + 1}/{plan.runs}: {secs:.3f} s, {hop[-1]:.3f} ms/hop")
    return Line("W3", plan.runs, "per_hop_ms", hop).figure("total_s", total).with_("hops", n)


def w4(plan):
    n = 500
    expected = n + n * (n - 1) // 2
    wall = []
    for run in range(plan.runs):
        t = time.perf_counter()
        p = prep.remote()
        mids = [mid.remote(p, i) for i in range(n)]
        v = ray.get(agg.remote(*mids))
        wall.append(time.perf_counter() - t)
        check(v == expected, f"W4: aggregate {v} is not {expected}")
        say(f"[W4] run {run + 1}/{plan.runs}: {wall[-1]:.3f} s")
    return (Line("W4", plan.runs, "wall_s", wall)
            .with_("tasks", n + 2).with_("expected", expected))


def w5(plan):
    n = 30
    ideal = -(-n // CPUS) * 0.1
    wall, eff = [], []
    for run in range(plan.runs):
        t = time.perf_counter()
        total = sum(ray.get([sleep.remote(i) for i in range(n)]))
        secs = time.perf_counter() - t
        check(total == n * (n - 1) // 2, "W5: wrong sum")
        wall.append(secs)
        eff.append(ideal / secs)
        say(f"[W5] run {run + 1}/{plan.runs}: {secs:.3f} s, efficiency {eff[-1]:.3f}")
    return (Line("W5", plan.runs, "wall_s", wall).figure("efficiency", eff)
            .with_("tasks", n).with_("ideal_s", ideal))


# ---- W6: cold start ------------------------------------------------------


def w6(plan, temp_root):
    cold, parts = [], []
    for run in range(plan.runs):
        temp_dir = os.path.join(temp_root, f"w6-{run + 1}")
        launched = time.time()
        t = time.perf_counter()
        child = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--w6-child", temp_dir, repr(launched)],
            stdout=subprocess.PIPE, text=True)
        try:
            result = child.stdout.readline()
            secs = time.perf_counter() - t
            check(result, "W6: the fresh Ray driver exited before its result")
            part = json.loads(result)
            check(part["value"] == ANSWER, f"W6: wrong result {result}")
            child.wait(timeout=60)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        cold.append(secs)
        parts.append(part)
        say(f"[W6] run {run + 1}/{plan.runs}: {secs:.3f} s ({result.strip()})")
    return (Line("W6", plan.runs, "cold_start_s", cold)
            .with_("breakdown", parts)
            .with_("breakdown_note", "child-side s since launch: ray imported, "
                   "ray.init returned, result held"))


def w6_child(temp_dir, launched):
    """A fresh driver: start Ray, get identity(42), report, shut down."""
    out = results_to_stdout_only()
    imported = time.time() - launched
    start_ray(temp_dir)
    try:
        started = time.time() - launched
        v = ray.get(identity.remote(ANSWER))
        result = time.time() - launched
        out.write(json.dumps({"value": v, "imported_s": round(imported, 4),
                              "init_s": round(started, 4), "result_s": round(result, 4)}) + "\n")
        out.flush()
    finally:
        ray.shutdown()


# ---- main ----------------------------------------------------------------


def workload(name):
    n = name.upper().removeprefix("W")
    if not n.isdigit() or not 1 <= int(n) <= 6:
        raise argparse.ArgumentTypeError(f"{name!r}: Ray's side has W1..W6")
    return int(n)


def parse_args():
    p = argparse.ArgumentParser(description="Ray's W1-W6 of shared/benchmarks.md")
    p.add_argument("--quick", action="store_true", help="1 run, W2 at 100 and 1,000 tasks")
    p.add_argument("--runs", type=int, help="runs per workload (default 3, quick 1)")
    p.add_argument("--w6-child", nargs=2, metavar=("TEMP_DIR", "LAUNCHED"), help=argparse.SUPPRESS)
    p.add_argument("workloads", nargs="*", type=workload, metavar="W1..W6")
    plan = p.parse_args()
    if plan.runs is not None and plan.runs < 1:
        p.error("--runs needs a positive number")
    plan.runs = plan.runs or (1 if plan.quick else 3)
    plan.w2_sizes = [100, 1_000] if plan.quick else [1_000, 10_000, 100_000]
    plan.selected = set(plan.workloads or range(1, 7))
    return plan


def on_the_cluster(plan, temp_dir, out):
    """W1-W5 on one cluster, after the warm-up."""
    t = time.perf_counter()
    start_ray(temp_dir)
    say(f"[ray] Ray {ray.__version__}, {CPUS} CPUs, up in {time.perf_counter() - t:.3f} s")
    try:
        warm_up()
        say("[ray] warmed up")
        for n, run in [(1, w1), (2, w2), (3, w3), (4, w4), (5, w5)]:
            if n not in plan.selected:
                continue
            run(plan).print(out)
    finally:
        ray.shutdown()


def main():
    plan = parse_args()
    if plan.w6_child:
        return w6_child(plan.w6_child[0], float(plan.w6_child[1]))
    out = results_to_stdout_only()
    began = time.perf_counter()
    temp_root = tempfile.mkdtemp(prefix="tm-ray-")
    try:
        if plan.selected & {1, 2, 3, 4, 5}:
            on_the_cluster(plan, os.path.join(temp_root, "main"), out)
        if 6 in plan.selected:
            w6(plan, temp_root).print(out)
    finally:
        shutil.rmtree(temp_root, ignore_errors=True)
    say(f"[ray] done in {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
