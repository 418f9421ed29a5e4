"""taskmesh's own API from Python: skill and bids, retries, timeouts,
priorities, cancellation, safe data, and a worker that blocks its loop."""

import asyncio
import time
from dataclasses import dataclass

import pytest

from conftest import run, until
from taskmesh import (
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
        ({"priority": 1.5}, "priority must be a whole number"),
        ({"max_attempts": 0}, "max_attempts must be a whole number"),
    ]:
        with pytest.raises(ValueError, match=message):
            Task("t", "r", **kwargs)
    with pytest.raises(ValueError, match="name must be a str"):
        Task(7, "r")

    async def main():
        with pytest.raises(ConfigError, match="worker"):
            await TaskProcessingPlayground().play(workers=[ProcessWorker("bad\nname", "r")]).__aenter__()
        async with TaskProcessingPlayground().play(workers=[ProcessWorker("w", "r")]) as p:
            with pytest.raises(SubmitError, match="retries"):
                await p.add_and_execute_task(Task("too many retries", "r", retries=10**6))
            with pytest.raises(SubmitError, match="control"):
                await p.add_and_execute_task(Task("bad\u0007name", "r"))

    run(main())


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
