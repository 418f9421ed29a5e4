"""taskmesh from Python: W1, W2 and W3 of shared/benchmarks.md with Python
workers, to compare with taskmesh's Rust bench (benches/workloads.rs) and
with Ray (benches/ray/workloads.py) side by side.

Run with (after `pip install .`): `python benches/python/workloads.py
[--quick] [--runs N] [W1 W2 W3]`.

The mesh: this process is the client and the admin (a
`TaskProcessingPlayground` without workers); 3 worker peers are separate
Python processes (this file with `--worker`), each one Python worker with
one slot, joined by multiaddr on 127.0.0.1. Task bodies: identity(x)=x
(W1, W2), inc(x)=x+1 over a chain whose outputs flow between tasks (W3).
Every clock starts right before the first submit and stops once the client
holds the checked final value (W2: n(n-1)/2; W3: 100). Warm-up untimed
(100 tasks at once, then 10 in sequence). Prints one JSON line per
workload on stdout (`median`, `min`, `max` of the primary figure, and
every run under `samples`); progress on stderr.
"""

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from taskmesh import Node, ProcessWorker, Task, TaskProcessingPlayground

WORKERS = 3


class Body(ProcessWorker):
    """identity for role "identity"; inc of the dependency's output (or of
    the input) for role "inc"."""

    async def _processor(self, request, time):
        if request.task_type == "identity":
            return request.input
        before = next(iter(request.dependencies.values()), request.input)
        return before + 1


async def worker_main(join: str, name: str) -> None:
    body = [Body(f"{name}-identity", role="identity"), Body(f"{name}-inc", role="inc")]
    async with Node(body, join=[join]):
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def summary(name: str, unit: str, samples: list, **extra) -> dict:
    return {
        "workload": name,
        "unit": unit,
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "samples": samples,
        **extra,
    }


async def w1(p) -> dict:
    lat = []
    for i in range(200):
        t0 = time.perf_counter()
        r = await p.add_and_execute_task(Task("w1", "identity", input_data=i))
        lat.append((time.perf_counter() - t0) * 1000)
        assert r.output == i, r
    lat.sort()
    return {"p50": lat[99], "p99": lat[197]}


async def w2(p, n: int) -> float:
    tasks = [Task(f"w2-{i}", "identity", input_data=i) for i in range(n)]
    t0 = time.perf_counter()
    results = await p.wait(await p.submit(tasks))
    total = sum(r.output for r in results)
    wall = time.perf_counter() - t0
    assert total == n * (n - 1) // 2, total
    return n / wall


async def w3(p) -> float:
    chain = [Task("w3-0", "inc", input_data=0)]
    for i in range(1, 100):
        chain.append(Task(f"w3-{i}", "inc", dependencies=[chain[-1]]))
    t0 = time.perf_counter()
    await p.submit(chain)
    (last,) = await p.wait([chain[-1]])
    wall = time.perf_counter() - t0
    assert last.output == 100, last
    return wall * 1000 / 100


async def main(args) -> None:
    async with TaskProcessingPlayground(no_worker_timeout=30).play() as p:
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "--worker",
                p.addrs[0],
                f"w{i}",
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            for i in range(WORKERS)
        ]
        try:
            for proc in procs:
                line = await asyncio.wait_for(proc.stdout.readline(), 60)
                assert line.strip() == b"ready", line
            await p.wait_for_workers(2 * WORKERS, 60)
            say("warm-up")
            await p.wait(await p.submit([Task("warm", "identity", input_data=i) for i in range(100)]))
            for i in range(10):
                await p.add_and_execute_task(Task("warm", "identity", input_data=i))
            runs = 1 if args.quick else args.runs
            out = []
            if "W1" in args.workloads:
                s = [await w1(p) for _ in range(runs)]
                p50 = [x["p50"] for x in s]
                p99 = [x["p99"] for x in s]
                out.append(
                    summary(
                        "W1", "ms p50", p50, p99=statistics.median(p99), p99_min=min(p99), p99_max=max(p99)
                    )
                )
            if "W2" in args.workloads:
                for n in (100, 1000) if args.quick else (1000, 10000):
                    out.append(summary(f"W2 {n}", "tasks/s", [await w2(p, n) for _ in range(runs)]))
            if "W3" in args.workloads:
                out.append(summary("W3", "ms per hop", [await w3(p) for _ in range(runs)]))
            for line in out:
                print(json.dumps(line), flush=True)
        finally:
            for proc in procs:
                proc.stdin.close()
            for proc in procs:
                try:
                    await asyncio.wait_for(proc.wait(), 30)
                except asyncio.TimeoutError:
                    proc.kill()
                    await proc.wait()


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        asyncio.run(worker_main(sys.argv[2], sys.argv[3]))
        sys.exit(0)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 run, W2 at 100 and 1,000 tasks")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("workloads", nargs="*", default=["W1", "W2", "W3"])
    a = ap.parse_args()
    a.workloads = [w.upper() for w in a.workloads] or ["W1", "W2", "W3"]
    say(f"taskmesh from Python, {Path(__file__).name}: {' '.join(a.workloads)}")
    asyncio.run(main(a))
