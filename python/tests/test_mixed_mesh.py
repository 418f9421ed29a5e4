"""A mixed mesh on loopback: an admin and a Rust worker started with the
`taskmesh` command line, a Python worker process (examples/python/
remote_worker.py), tasks submitted with the CLI and from Python. The
admin awards each task by skill, whatever language its worker is in."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from conftest import run
from taskmesh import Node, ProcessWorker, Task, TaskProcessingPlayground

ROOT = Path(__file__).resolve().parents[2]
#: The CLI binary; scripts/test-python.sh builds it (cargo build --bin taskmesh).
BIN = os.environ.get("TASKMESH_BIN") or str(ROOT / "target" / "debug" / "taskmesh")
#: The longest wait for any one event (a line, a listing, a process exit).
BOUND = 60


class Peer:
    """One process of the mesh; its output is read line by line."""

    def __init__(self, name, argv, tmp):
        self.name = name
        self.out = open(tmp / f"{name}.out", "w+")
        self.err = tmp / f"{name}.log"
        self.proc = subprocess.Popen(
            argv, stdout=self.out, stderr=open(self.err, "w"), stdin=subprocess.DEVNULL, cwd=ROOT
        )

    def wait_line(self, prefix):
        end = time.monotonic() + BOUND
        while time.monotonic() < end:
            self.out.seek(0)
            for line in self.out.read().splitlines():
                if line.startswith(prefix):
                    return line[len(prefix) :].strip()
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited ({self.proc.returncode}): {self.err.read_text()[-2000:]}")
            time.sleep(0.05)
        pytest.fail(
            f"{self.name} printed no {prefix!r} line within {BOUND} s: {self.err.read_text()[-2000:]}"
        )

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(BOUND)
        self.out.close()


@pytest.fixture
def mesh(tmp_path):
    if not os.access(BIN, os.X_OK):
        pytest.fail(f"no taskmesh binary at {BIN}: run `cargo build --bin taskmesh` or set TASKMESH_BIN")
    name = f"pytest-{uuid.uuid4()}"
    common = ["--no-mdns", "--mesh", name]
    peers = []
    try:
        admin = Peer(
            "admin",
            [BIN, "node", "--listen", "/ip4/127.0.0.1/tcp/0", "--no-worker-timeout", "1", *common],
            tmp_path,
        )
        peers.append(admin)
        addr = admin.wait_line("listening on ")
        rust = Peer(
            "rust-worker",
            [
                BIN,
                "node",
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--join",
                addr,
                "--worker",
                "Rusty:worker:3",
                "--no-admin",
                *common,
            ],
            tmp_path,
        )
        peers.append(rust)
        python = Peer(
            "python-worker",
            [
                sys.executable,
                "examples/python/remote_worker.py",
                "--join",
                addr,
                "--mesh",
                name,
                "--name",
                "Pythonista",
                "--skill",
                "9",
            ],
            tmp_path,
        )
        peers.append(python)
        python.wait_line("worker Pythonista ")
        yield {"addr": addr, "common": common, "tmp": tmp_path, "peers": peers}
    finally:
        for p in peers:
            p.stop()


def cli(mesh, *args):
    argv = [BIN, *args, "--join", mesh["addr"], *mesh["common"], "--admin-wait", "30"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=BOUND, cwd=ROOT)


def test_a_python_worker_takes_tasks_by_skill_in_a_mesh_of_cli_nodes(mesh):
    tasks = {
        "task": [
            {"name": "easy", "role": "worker", "difficulty": 2, "input": "easy work"},
            {
                "name": "hard",
                "role": "worker",
                "difficulty": 8,
                "input_json": {"n": 8, "big": 12345678901234567890},
            },
            {"name": "impossible", "role": "worker", "difficulty": 10, "input": "nobody can"},
        ]
    }
    path = mesh["tmp"] / "tasks.json"
    path.write_text(json.dumps(tasks))
    done = cli(mesh, "submit", str(path), "--json", "--wait-workers", "2", "--timeout", "60")
    assert done.returncode == 1, done.stderr  # "impossible" fails, as it must
    results = {r["name"]: r for r in map(json.loads, done.stdout.splitlines())}
    # The least skilled capable worker wins: Rusty (3) for difficulty 2, the
    # Python worker (9) for difficulty 8, nobody for 10.
    assert results["easy"]["status"] == "completed" and results["easy"]["worker"] == "Rusty"
    assert results["hard"]["status"] == "completed" and results["hard"]["worker"] == "Pythonista"
    assert json.loads(results["hard"]["output"]) == {
        "worker": "Pythonista",
        "task": "hard",
        "input": {"n": 8, "big": 12345678901234567890},
    }
    assert (
        results["impossible"]["status"] == "failed" and "no capable worker" in results["impossible"]["error"]
    )

    listed = cli(mesh, "workers", "--json")
    assert listed.returncode == 0, listed.stderr
    workers = {w["name"]: w for w in map(json.loads, listed.stdout.splitlines())}
    assert workers["Pythonista"]["skill"] == 9 and workers["Rusty"]["skill"] == 3

    async def from_python():
        # A Python client node in the same mesh: it hosts no workers.
        async with Node(join=[mesh["addr"]], mesh=mesh["common"][2]) as client:
            await client.wait_for_admin()
            easy, hard = Task("py easy", "worker", difficulty=1), Task("py hard", "worker", difficulty=9)
            return await client.execute_task_group([easy, hard]), easy.id, hard.id

    group, easy_id, hard_id = run(from_python())
    assert group[easy_id].worker == "Rusty" and group[easy_id].success
    assert group[hard_id].worker == "Pythonista" and group[hard_id].output["task"] == "py hard"


def test_a_playground_joining_a_cli_mesh_leaves_it_whole(mesh):
    """A playground that joins a mesh is a worker and client there, not a
    voter: when it exits, the CLI admin keeps its quorum."""

    class Shout(ProcessWorker):
        async def _processor(self, request, time):
            return str(request.data).upper()

    async def visit():
        playground = TaskProcessingPlayground(join=[mesh["addr"]], mesh=mesh["common"][2])
        async with playground.play(workers=[Shout("Visitor", role="shout")]) as p:
            result = await p.add_and_execute_task(Task("hello", "shout", {"data": "hello"}))
            # A voter would be added within a second or two of joining:
            # watch the admin's peer list for 3 s (a window, not a wait).
            loop = asyncio.get_running_loop()
            end = loop.time() + 3
            while loop.time() < end:
                peers = await loop.run_in_executor(None, cli, mesh, "peers", "--json")
                assert peers.returncode == 0, peers.stderr
                for peer in map(json.loads, peers.stdout.splitlines()):
                    if peer["peer"] == p.peer_id:
                        assert not peer.get("is_voter") and not peer.get("is_admin"), peer
                await asyncio.sleep(0.2)
            return result

    result = run(visit())
    assert result.success and result.output == "HELLO" and result.worker == "Visitor"
    listed = cli(mesh, "workers", "--json")
    assert listed.returncode == 0, listed.stderr
    names = {json.loads(line)["name"] for line in listed.stdout.splitlines()}
    assert {"Rusty", "Pythonista"} <= names and "Visitor" not in names


def test_the_python_worker_stops_cleanly_on_sigterm(mesh):
    python = mesh["peers"][2]
    python.proc.send_signal(signal.SIGTERM)
    assert python.proc.wait(BOUND) == 0, python.err.read_text()[-2000:]
    python.wait_line("stopping")
