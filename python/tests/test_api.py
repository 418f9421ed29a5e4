"""taskmesh's own API from Python: skill and bids, retries, timeouts,
priorities, cancellation, safe data, and a worker that blocks its loop."""

import asyncio
import time
from dataclasses import dataclass

import pytest

from conftest import run, until
from taskmesh import (
    DuplicateTaskError,
    EncodeError,
    PermanentError,
    ProcessWorker,
    Record,
    Task,
    TaskProcessingPlayground,
    TaskStatus,
)


class Flaky(ProcessWorker):
    """Fails its first ``failures`` attempts of each task, then answers."""

    def __init__(self, name, failures, error=ValueError):
        super().__init__(name, role="flaky")
        self.failures, self.error, self.attempts = failures, error, []

    async def _processor(self, request, time):
        self.attempts.append(request.attempt)
        if request.attempt <= self.failures:
            raise self.error(f"attempt {request.attempt} failed")
        return {"attempt": request.attempt}


def test_retries_then_success_and_permanent_errors_are_not_retried():
    async def main():
        flaky = Flaky("flaky", failures=2)
        async with TaskProcessingPlayground().play(workers=[flaky]) as p:
            retried = await p.add_and_execute_task(Task("retried", "flaky", retries=2))
            short = await p.add_and_execute_task(Task("short of retries", "flaky", retries=1))
        perm = Flaky("perm", failures=5, error=PermanentError)
        async with TaskProcessingPlayground().play(workers=[perm]) as p:
            permanent = await p.add_and_execute_task(Task("permanent", "flaky", retries=5))
        return retried, short, permanent, flaky.attempts, perm.attempts

    retried, short, permanent, attempts, perm_attempts = run(main())
    assert retried.success and retried.output == {"attempt": 3} and retried.attempts == 3
    assert not short.success and "attempt 2 failed" in short.error
    assert attempts == [1, 2, 3, 1, 2]
    assert not permanent.success and "PermanentError: attempt 1 failed" in permanent.error
    assert perm_attempts == [1]


class Sleeper(ProcessWorker):
    """Sleeps on the loop until cancelled, and says so."""

    async def _processor(self, request, time):
        self.started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return "woke up"


def sleeper(name="sleeper"):
    s = Sleeper(name, role="sleep")
    s.started, s.cancelled = asyncio.Event(), asyncio.Event()
    return s


def test_timeout_cancels_the_coroutine_and_fails_the_task():
    async def main():
        s = sleeper()
        async with TaskProcessingPlayground().play(workers=[s]) as p:
            result = await p.add_and_execute_task(Task("slow", "sleep", timeout=0.3))
            await asyncio.wait_for(s.cancelled.wait(), 20)
            return result

    result = run(main())
    assert result.status == TaskStatus.FAILED
    assert "did not finish within 300 ms" in result.error, result.error


def test_cancel_a_running_python_worker():
    async def main():
        s = sleeper()
        async with TaskProcessingPlayground().play(workers=[s]) as p:
            task = Task("to cancel", "sleep")
            waiting = asyncio.ensure_future(p.add_and_execute_task(task))
            await asyncio.wait_for(s.started.wait(), 20)
            # Added again while it runs: refused, and it goes on running.
            with pytest.raises(DuplicateTaskError, match="duplicate task id"):
                await p.add_and_execute_task(task)
            outcome = await p.cancel(task)
            await asyncio.wait_for(s.cancelled.wait(), 20)
            result = await waiting
            again = await p.cancel(task.id)
            return outcome, result, again

    outcome, result, again = run(main())
    assert outcome == "cancelled"
    assert result.status == TaskStatus.CANCELLED and not result.success
    assert again == "finished:cancelled"


def test_priority_orders_waiting_tasks():
    order = []

    class One(ProcessWorker):
        async def _processor(self, request, time):
            if request.name == "blocker":
                await asyncio.wait_for(self.release.wait(), 20)
            order.append(request.name)
            return None

    async def main():
        one = One("one", role="p", standing_bid=None)
        one.release = asyncio.Event()
        async with TaskProcessingPlayground().play(workers=[one]) as p:
            blocker = Task("blocker", "p")
            await p.add_and_execute_task(blocker, wait_for_completion=False)
            await until(
                lambda: p.task_manager.get_task(blocker).status == TaskStatus.RUNNING, "the blocker runs"
            )
            low = Task("low", "p", priority=-5)
            high = Task("high", "p", priority=5)
            await p.submit([low])
            await p.submit([high])
            one.release.set()
            await p.wait([low, high])

    run(main())
    assert order == ["blocker", "high", "low"]


def test_skill_decides_the_award_and_standing_bids_can_be_off():
    class Named(ProcessWorker):
        async def _processor(self, request, time):
            return self.name

    async def main():
        workers = [
            Named("weak", role="w", skill=2),
            Named("strong", role="w", skill=8, standing_bid=None),
        ]
        async with TaskProcessingPlayground().play(workers=workers) as p:
            easy = await p.add_and_execute_task(Task("easy", "w", difficulty=1))
            hard = await p.add_and_execute_task(Task("hard", "w", difficulty=7))
            return easy, hard

    easy, hard = run(main())
    assert easy.output == "weak" and hard.output == "strong"
    assert "auction" in hard.reason or "bid" in hard.reason, hard.reason


def test_a_worker_that_blocks_its_loop_does_not_stall_the_mesh():
    """time.sleep in a coroutine holds the asyncio loop (a Python
    mistake); the node's own threads keep renewing the attempt's lease
    (2 s by default), so the attempt is not taken for lost."""

    class Blocking(ProcessWorker):
        async def _processor(self, request, t):
            time.sleep(3)  # noqa: ASYNC251 - the mistake under test
            return "survived"

    async def main():
        async with TaskProcessingPlayground().play(workers=[Blocking("b", role="b")]) as p:
            return await p.add_and_execute_task(Task("blocks", "b"))

    result = run(main())
    assert result.success and result.output == "survived" and result.attempts == 1


@dataclass
class Point:
    x: int
    y: float


@dataclass
class Shape:
    name: str
    points: list


def test_data_is_json_dataclasses_become_fields_and_bad_values_are_refused():
    class Echo(ProcessWorker):
        async def _processor(self, request, time):
            shape = request.data
            if shape == "bad output":
                return {"a set": {1, 2}}
            return {
                "name": shape.name,
                "x0": shape.points[0].x,
                "type": type(shape).__name__,
                "input": request.input,
            }

    async def main():
        async with TaskProcessingPlayground().play(workers=[Echo("echo", role="e")]) as p:
            shape = Shape("tri", [Point(1, 0.5), Point(2, 1.5)])
            good = await p.add_and_execute_task(Task("good", "e", input_data={"data": shape, "big": 2**70}))
            with pytest.raises(EncodeError) as bad_input:
                await p.add_and_execute_task(Task("bad input", "e", input_data={"data": {1, 2}}))
            with pytest.raises(EncodeError) as nan:
                await p.add_and_execute_task(Task("nan", "e", input_data={"data": float("nan")}))
            bad_output = await p.add_and_execute_task(
                Task("bad output", "e", input_data={"data": "bad output"})
            )
            return good, str(bad_input.value), str(nan.value), bad_output

    good, bad_input, nan, bad_output = run(main())
    assert good.output == {
        "name": "tri",
        "x0": 1,
        "type": "Record",
        "input": {"data": {"name": "tri", "points": [{"x": 1, "y": 0.5}, {"x": 2, "y": 1.5}]}, "big": 2**70},
    }
    assert "input_data of task 'bad input'" in bad_input and "set" in bad_input
    assert "task 'nan'" in nan
    assert not bad_output.success and "output of task 'bad output'" in bad_output.error


def test_record_reads_keys_as_attributes():
    r = Record(a=1, items=2)
    assert r.a == 1 and r["items"] == 2 and callable(r.items)
    with pytest.raises(AttributeError, match="no field 'b'"):
        _ = r.b


def test_bad_settings_are_clear_errors():
    from taskmesh import ConfigError

    with pytest.raises(ValueError, match="processor must be the role"):
        Task("t", processor=len)
    with pytest.raises(ValueError, match="timeout must be a number of seconds"):
        Task("t", "r", timeout=-1)

    async def main():
        with pytest.raises(ValueError, match="skill must be a whole number"):
            await (
                TaskProcessingPlayground().play(workers=[ProcessWorker("w", role="r", skill=-3)]).__aenter__()
            )
        with pytest.raises(ValueError, match="given twice"):
            await (
                TaskProcessingPlayground()
                .play(workers=[ProcessWorker("w", "r"), ProcessWorker("w", "r")])
                .__aenter__()
            )
        with pytest.raises(ConfigError, match="not a multiaddr"):
            await TaskProcessingPlayground(join=["nonsense"]).play().__aenter__()

    run(main())


def test_bad_numbers_and_names_are_clear_errors():
    from taskmesh import ConfigError, SubmitError

    for kwargs, message in [
        ({"difficulty": -1}, "difficulty must be a whole number"),
        ({"difficulty": 2**40}, "difficulty must be a whole number"),
        ({"retries": "3"}, "retries must be a whole number"),
        ({"retries": 101}, r"retries must be a whole number from 0 to 100"),
        ({"priority": 1.5}, "priority must be a whole number"),
        ({"priority": 2 * 10**6}, "priority must be a whole number from -1000000"),
        ({"max_attempts": 0}, "max_attempts must be a whole number"),
        ({"timeout": 1e19}, r"timeout must be a number of seconds from 0 \(no limit\) to 2592000"),
        ({"trigger": "bogus"}, "task 't': trigger must be one of all_success, one_failed, all_done"),
        ({"trigger": None}, "trigger must be one of"),
        ({"id": 123}, "task 't': id must be a task or a task id"),
        ({"dependencies": "abc"}, "dependencies must be a collection of tasks or ids"),
        ({"dependencies": ["abc"]}, "a dependency must be a task or a task id"),
    ]:
        with pytest.raises(ValueError, match=message):
            Task("t", "r", **kwargs)
    with pytest.raises(ValueError, match="name must be a str"):
        Task(7, "r")

    async def main():
        with pytest.raises(ConfigError, match="worker"):
            await TaskProcessingPlayground().play(workers=[ProcessWorker("bad\nname", "r")]).__aenter__()
        with pytest.raises(ValueError, match="slots must be a whole number from 1 to 65536"):
            await (
                TaskProcessingPlayground().play(workers=[ProcessWorker("w", "r", slots=10**10)]).__aenter__()
            )
        with pytest.raises(ConfigError, match="mesh name"):
            await TaskProcessingPlayground(mesh="a\nb").play().__aenter__()
        with pytest.raises(ValueError, match="seed must be"):
            TaskProcessingPlayground(seed=-1)
        async with TaskProcessingPlayground().play(workers=[ProcessWorker("w", "r")]) as p:
            with pytest.raises(SubmitError, match="control"):
                await p.add_and_execute_task(Task("bad\u0007name", "r"))
            for call in (p.wait_for_workers(1, 1e19), p.stop(grace=1e19)):
                with pytest.raises(ValueError, match="from 0 to 2592000"):
                    await call

    run(main())


def test_a_port_in_use_and_an_unreachable_mesh_are_clear_errors():
    from taskmesh import ConfigError, MeshError, Node

    async def main():
        first = TaskProcessingPlayground()
        async with first.play():
            nowhere = first.addrs[0]
            port = int(nowhere.split("/tcp/")[1].split("/")[0])
            with pytest.raises(ConfigError, match=f"cannot listen on /ip4/127.0.0.1/tcp/{port}"):
                await TaskProcessingPlayground(port=port).play().__aenter__()
        # Nobody listens there now: the wait ends as soon as the join fails.
        async with Node(join=[nowhere]) as lost:
            started = asyncio.get_running_loop().time()
            with pytest.raises(MeshError, match="cannot reach the mesh"):
                await lost.wait_for_admin(30)
            return asyncio.get_running_loop().time() - started

    waited = run(main())
    assert waited < 15, waited


def test_data_decoding_rules():
    from taskmesh._data import decode, encode

    assert decode(b"42") == 42 and decode(b"true") is True and decode(b"") is None
    assert decode(b"hello") == "hello" and decode(b"NaN") == "NaN" and decode(b"\xff\xfe") == b"\xff\xfe"
    assert decode(b'{"a":{"b":1}}').a.b == 1
    with pytest.raises(EncodeError, match="input_data of task 'x'.*surrogate"):
        encode({"data": "\ud800"}, "input_data of task 'x'")


def test_any_exception_fails_the_attempt_and_long_answers_are_cut():
    class Odd(BaseException):
        pass

    class Strange(ProcessWorker):
        async def _processor(self, request, time):
            if request.data == "odd":
                raise Odd("not an Exception")
            return False, "q" * (1 << 20)

    async def main():
        async with TaskProcessingPlayground().play(workers=[Strange("s", role="s")]) as p:
            odd = await p.add_and_execute_task(Task("odd", "s", {"data": "odd"}, timeout=10))
            big = await p.add_and_execute_task(Task("big", "s", {"data": "big"}))
            return odd, big

    odd, big = run(main())
    assert odd.status == TaskStatus.FAILED and "Odd: not an Exception" in odd.error
    assert big.status == TaskStatus.FAILED and "over the" in big.error and "a failure carries" in big.error
    assert len(big.error) < 1000


def test_stop_cancels_coroutines_still_running_after_the_grace():
    async def main():
        s = sleeper()
        p = TaskProcessingPlayground(grace=0.3)
        async with p.play(workers=[s]):
            await p.add_and_execute_task(Task("long", "sleep"), wait_for_completion=False)
            await asyncio.wait_for(s.started.wait(), 20)
        await asyncio.wait_for(s.cancelled.wait(), 20)

    run(main())


def test_a_worker_whose_loop_is_gone_leaves_and_its_tasks_run_elsewhere():
    """A worker node started on an asyncio loop that then closed: its first
    award finds the loop gone, the node leaves the mesh, and the admin runs
    the task on the healthy worker."""
    import threading

    from taskmesh import Node

    class Named(ProcessWorker):
        async def _processor(self, request, time):
            return self.name

    async def main():
        healthy = Named("healthy", role="n", skill=5)
        async with TaskProcessingPlayground().play(workers=[healthy]) as p:
            addr = p.addrs[0]
            box = {}

            def orphan():
                # Its own loop, closed without stopping the node.
                loop = asyncio.new_event_loop()
                box["node"] = loop.run_until_complete(
                    Node([Named("orphan", role="n", skill=1)], join=[addr]).start()
                )
                loop.close()

            thread = threading.Thread(target=orphan)
            thread.start()
            await asyncio.get_running_loop().run_in_executor(None, thread.join)
            await p.wait_for_workers(2)
            # The orphan has the lowest sufficient skill: it is awarded first.
            results = await asyncio.gather(
                *[p.add_and_execute_task(Task(f"t{i}", "n", difficulty=1)) for i in range(4)]
            )
            left = await until(lambda: _names(p), "the orphan to leave", timeout=30)
            return results, left

    async def _names(p):
        names = {w.name for w in await p.connected_workers()}
        return names if names == {"healthy"} else None

    results, left = run(main())
    assert all(r.success and r.output == "healthy" for r in results), results
    assert any(r.attempts >= 2 for r in results), [r.attempts for r in results]
    assert left == {"healthy"}


EXIT_SCRIPT = """
import asyncio, sys
from taskmesh import ProcessWorker, Task, TaskProcessingPlayground, Node

class Echo(ProcessWorker):
    async def _processor(self, request, time):
        return request.data

async def main(stop):
    p = TaskProcessingPlayground()
    if stop:
        async with p.play(workers=[Echo("e", role="e")]):
            await asyncio.gather(*[p.add_and_execute_task(Task(str(i), "e", {"data": i})) for i in range(20)])
    else:
        # Left running: the process exits with the node's threads alive.
        p.workers = [Echo("e", role="e")]
        await p.start()
        await p.wait_for_workers(1)
        await p.add_and_execute_task(Task("x", "e", {"data": 1}), wait_for_completion=False)

asyncio.run(main(sys.argv[1] == "stop"))
"""


@pytest.mark.parametrize("how", ["stop", "leave running"])
def test_the_interpreter_exits_cleanly_right_after_the_last_await(how):
    """A future completing as asyncio.run returns used to take the GIL
    back during finalization, and CPython aborted (3 runs in 4)."""
    import subprocess
    import sys

    for _ in range(10):
        done = subprocess.run(
            [sys.executable, "-c", EXIT_SCRIPT, how.split()[0]], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0 and "Fatal Python error" not in done.stderr, done.stderr[-3000:]


def test_odd_failures_are_reported_never_left_running():
    import sys
    from dataclasses import field

    @dataclass
    class Out:
        a: int
        b: int = field(init=False)  # never set: reading it raises

    class Unprintable(Exception):
        def __str__(self):
            raise RuntimeError("no")

    class Odd(ProcessWorker):
        async def _processor(self, request, time):
            if request.data == "unset":
                return Out(1)
            if request.data == "unprintable":
                raise Unprintable()
            # Its own sub-task, cancelled by its own code.
            sub = asyncio.ensure_future(asyncio.sleep(10))
            asyncio.get_running_loop().call_later(0.05, sub.cancel)
            await sub

    async def main():
        async with TaskProcessingPlayground().play(workers=[Odd("odd", role="o")]) as p:
            results = {}
            # Before 3.11 a CancelledError from the worker's own code counts
            # as the loop shutting down, and the node leaves (documented).
            cases = ("unset", "unprintable") + (("self-cancel",) if sys.version_info >= (3, 11) else ())
            for data in cases:
                results[data] = await p.add_and_execute_task(Task(data, "o", {"data": data}, timeout=20))
            # The node is still up and working.
            results["after"] = await p.add_and_execute_task(Task("after", "o", {"data": "unset"}, timeout=20))
            return results

    results = run(main())
    assert "cannot be sent as JSON: AttributeError" in results["unset"].error, results["unset"].error
    assert "Unprintable" in results["unprintable"].error, results["unprintable"].error
    if sys.version_info >= (3, 11):
        assert "CancelledError" in results["self-cancel"].error, results["self-cancel"].error
    assert all(r.status == TaskStatus.FAILED for r in results.values())


def test_node_arguments_are_checked_when_made():
    from taskmesh import DuplicateTaskError, Node

    for kwargs, message in [
        ({"mdns": "yes"}, "mdns must be True or False"),
        ({"mesh": 5}, "mesh must be a str"),
        ({"admin": None}, "admin must be one of"),
        ({"join": 5}, "join must be a multiaddr or a list of them"),
        ({"listen": [5]}, "each listen address must be a str"),
        ({"grace": float("inf")}, "grace must be a number of seconds from 0 to"),
        ({"task_timeout": True}, "task_timeout must be a number of seconds"),
        ({"no_worker_timeout": "5"}, "no_worker_timeout must be a number of seconds"),
    ]:
        with pytest.raises(ValueError, match=message):
            Node(**kwargs)
    for port in (True, "abc", 1.5, 70000):
        with pytest.raises(ValueError, match="port must be a whole number"):
            TaskProcessingPlayground(port=port)

    async def main():
        async with TaskProcessingPlayground().play(workers=[ProcessWorker("w", "r")]) as p:
            with pytest.raises(ValueError, match="n must be a whole number"):
                await p.wait_for_workers(-1)
            with pytest.raises(ValueError, match="timeout must be a number of seconds"):
                await p.wait_for_admin(True)
            t = Task("twice", "r")
            with pytest.raises(DuplicateTaskError, match="duplicate task id"):
                await p.execute_task_group([t, t])
            # One address as a str is one address.
            async with Node(join=p.addrs[0]) as client:
                assert await client.wait_for_admin() == p.peer_id

    run(main())
