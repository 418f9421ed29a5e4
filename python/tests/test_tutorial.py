"""Ceylon's task-playground tutorial, section by section, with only its
imports changed (the classes and calls below are the tutorial's own)."""

import asyncio
from dataclasses import dataclass

from conftest import run, until
from taskmesh import ProcessRequest, ProcessWorker, Task, TaskProcessingPlayground, TaskResult, TaskStatus


# --- 1. Define your task structure ------------------------------------------
@dataclass
class WorkTask:
    id: int
    description: str
    difficulty: int


# --- 2. Create a worker processor -------------------------------------------
class WorkerProcessor(ProcessWorker):
    def __init__(self, name: str, skill_level: int):
        super().__init__(name=name, role="worker")
        self.skill_level = skill_level

    async def _processor(self, request: ProcessRequest, time: int) -> tuple[bool, dict]:
        task = request.data
        await asyncio.sleep(task.difficulty / 100)  # simulate work
        success = self.skill_level >= task.difficulty
        return success, {"task_id": task.id, "worker": self.name, "difficulty": task.difficulty}


class TextProcessor(ProcessWorker):
    async def _processor(self, request: ProcessRequest, time: int):
        return request.data * 5


class AggregateProcessor(ProcessWorker):
    async def _processor(self, request: ProcessRequest, time: int):
        data = request.data or 0
        for d in request.dependency_data.values():
            data += d.output
        return data


def tutorial_workers():
    return [
        WorkerProcessor("Junior", skill_level=3),
        WorkerProcessor("Intermediate", skill_level=6),
        WorkerProcessor("Senior", skill_level=9),
    ]


# --- 3 and 4. Set up the playground, create and execute tasks ---------------
def test_workers_by_skill_sequential_tasks():
    async def main():
        tasks = [
            WorkTask(id=1, description="Simple calculation", difficulty=2),
            WorkTask(id=2, description="Data analysis", difficulty=5),
            WorkTask(id=3, description="ML model training", difficulty=8),
        ]
        playground = TaskProcessingPlayground(name="task_playground", port=0)
        async with playground.play(workers=tutorial_workers()) as active_playground:
            ceylon_tasks = [
                Task(name=f"Task {task.id}", processor="worker", input_data={"data": task}) for task in tasks
            ]
            results = []
            for task in ceylon_tasks:
                result: TaskResult = await active_playground.add_and_execute_task(
                    task=task, wait_for_completion=True
                )
                results.append(result)
        return results

    results = run(main())
    assert [r.success for r in results] == [True, True, True]
    # Each task went to the least skilled worker able to do it, as the
    # tutorial's diagram has it, and the output is what _processor returned.
    assert [r.output[1].get("worker") for r in results] == ["Junior", "Intermediate", "Senior"]
    assert [r.worker for r in results] == ["Junior", "Intermediate", "Senior"]
    assert results[1].output == [True, {"task_id": 2, "worker": "Intermediate", "difficulty": 5}]
    assert all(r.status == TaskStatus.COMPLETED and r.error is None for r in results)
    assert "lowest sufficient skill" in results[0].reason


def test_no_capable_worker_fails_with_a_reason():
    async def main():
        playground = TaskProcessingPlayground(port=0, no_worker_timeout=0.5)
        async with playground.play(workers=tutorial_workers()) as p:
            hard = WorkTask(id=9, description="Quantum computing simulation", difficulty=10)
            return await p.add_and_execute_task(
                Task(name="Too hard", processor="worker", input_data={"data": hard})
            )

    result = run(main())
    assert not result.success and result.status == TaskStatus.FAILED
    assert "no capable worker" in result.error and "best skill" in result.error, result.error


# --- Parallel processing: asyncio.gather over add_and_execute_task ----------
def test_gathered_tasks_run_in_parallel():
    started = []
    everyone = asyncio.Event

    class Meeting(ProcessWorker):
        """Returns only once all four tasks have started: sequential
        processing would never get there."""

        async def _processor(self, request, time):
            started.append(self.name)
            if len(started) == 4:
                self.all_in.set()
            await asyncio.wait_for(self.all_in.wait(), 20)
            return {"worker": self.name, "n": request.data}

    async def main():
        all_in = everyone()
        workers = [Meeting(f"w{i}", role="meet") for i in range(4)]
        for w in workers:
            w.all_in = all_in
        async with TaskProcessingPlayground(port=0).play(workers=workers) as p:
            tasks = [Task(name=f"meet {i}", processor="meet", input_data={"data": i}) for i in range(4)]
            return await asyncio.gather(*[p.add_and_execute_task(t) for t in tasks])

    results = run(main())
    assert all(r.success for r in results), [r.error for r in results]
    assert [r.output["n"] for r in results] == [0, 1, 2, 3]
    assert sorted(r.worker for r in results) == ["w0", "w1", "w2", "w3"]


# --- Task dependencies: the aggregator receives its dependencies' results ---
def test_dependencies_sequential():
    async def main():
        workers = [
            TextProcessor("text_worker", role="multiply"),
            AggregateProcessor("aggregate_worker", role="aggregate"),
        ]
        async with TaskProcessingPlayground().play(workers=workers) as active_playground:
            task1 = Task(name="Process Data 1", processor="multiply", input_data={"data": 5})
            task2 = Task(name="Process Data 2", processor="multiply", input_data={"data": 10})
            task3 = Task(name="Process Data 3", processor="aggregate", dependencies={task1.id, task2.id})
            out = []
            for task in [task1, task2, task3]:
                task_result = await active_playground.add_and_execute_task(
                    task=task, wait_for_completion=True
                )
                out.append(task_result.output)
            return out

    assert run(main()) == [25, 50, 75]


def test_dependencies_gathered_in_any_order_wait_for_each_other():
    seen = {}

    class Recorder(ProcessWorker):
        async def _processor(self, request, time):
            seen[request.name] = (dict(request.dependencies), sorted(request.dependency_data))
            return sum(request.dependencies.values()) + (request.data or 0)

    async def main():
        async with TaskProcessingPlayground().play(workers=[Recorder("r", role="sum", slots=4)]) as p:
            a = Task(name="a", processor="sum", input_data={"data": 1})
            b = Task(name="b", processor="sum", input_data={"data": 2})
            c = Task(name="c", processor="sum", dependencies={a.id, b.id})
            d = Task(name="d", processor="sum", dependencies=[c])
            # The dependents come first: each waits for its dependencies'
            # submission, then the admin runs them in dependency order.
            results = await asyncio.gather(*[p.add_and_execute_task(t) for t in (d, c, b, a)])
            return [r.output for r in results], a.id, b.id

    outputs, a_id, b_id = run(main())
    assert outputs == [3, 3, 2, 1]
    assert seen["c"] == ({"a": 1, "b": 2}, sorted([a_id, b_id]))


def test_pipeline_with_a_cycle_or_unknown_dependency_is_refused():
    from taskmesh import SubmitError

    async def main():
        async with TaskProcessingPlayground().play(workers=[TextProcessor("t", role="multiply")]) as p:
            ghost = Task(name="never added", processor="multiply")
            orphan = Task(name="orphan", processor="multiply", dependencies={ghost.id})
            try:
                await p.add_and_execute_task(orphan)
            except SubmitError as e:
                unknown = str(e)
            x = Task(name="x", processor="multiply")
            y = Task(name="y", processor="multiply", dependencies={x.id})
            x.dependencies = {y.id}
            outcomes = await asyncio.gather(
                p.add_and_execute_task(x), p.add_and_execute_task(y), return_exceptions=True
            )
            return unknown, outcomes

    unknown, outcomes = run(main())
    assert "orphan" in unknown and "unknown task id" in unknown, unknown
    assert all(isinstance(o, Exception) for o in outcomes), outcomes
    assert any("cycle" in str(o) for o in outcomes), outcomes


# --- Error handling ---------------------------------------------------------
def test_error_handling():
    class Failing(ProcessWorker):
        async def _processor(self, request: ProcessRequest, time: int):
            if request.data == "declare":
                return False, {"why": "bad luck"}
            return parse_amount(request.data)

    async def main():
        async with TaskProcessingPlayground().play(workers=[Failing("f", role="fail")]) as active_playground:
            out = []
            for data in ("boom", "declare"):
                task = Task(name=f"task {data}", processor="fail", input_data={"data": data})
                try:
                    result = await active_playground.add_and_execute_task(task)
                    if not result.success:
                        out.append(result)
                except Exception as e:  # the tutorial's shape; nothing raises here
                    out.append(e)
            return out

    raised, declared = run(main())
    assert isinstance(raised, TaskResult) and not raised.success and raised.status == TaskStatus.FAILED
    # The exception's type and message, then the traceback's last lines,
    # down to the user's own frame.
    assert "ValueError: not an amount: 'boom'" in raised.error, raised.error
    assert "in parse_amount" in raised.error and "Traceback" in raised.error, raised.error
    # Ceylon counts (False, ...) as a success; taskmesh fails the task and
    # keeps the answer as the output.
    assert not declared.success and declared.status == TaskStatus.FAILED
    assert declared.output == [False, {"why": "bad luck"}]
    assert declared.output[1].why == "bad luck"


def parse_amount(text):
    raise ValueError(f"not an amount: {text!r}")


# --- Debugging: status while running, connected workers ---------------------
def test_status_while_running_and_connected_workers():
    class Gate(ProcessWorker):
        async def _processor(self, request, time):
            self.started.set()
            await asyncio.wait_for(self.release.wait(), 20)
            return "done"

    async def main():
        gate = Gate("gatekeeper", role="gate", skill=4)
        gate.started, gate.release = asyncio.Event(), asyncio.Event()
        playground = TaskProcessingPlayground()
        async with playground.play(workers=[gate, TextProcessor("text_worker", role="multiply")]):
            task = Task(name="held", processor="gate", difficulty=3)
            first = await playground.add_and_execute_task(task, wait_for_completion=False)
            await asyncio.wait_for(gate.started.wait(), 20)
            # Ceylon's synchronous call, at any moment.
            running = await until(
                lambda: playground.task_manager.get_task(task.id).status == TaskStatus.RUNNING, "running"
            )
            during = playground.task_manager.get_task(task.id)
            connected_workers = playground.llm_agents
            listed = await playground.connected_workers()
            gate.release.set()
            done = await until(lambda: playground.task_manager.get_task(task.id).status.is_final, "the end")
            final = playground.task_manager.get_task(task.id)
            unknown = playground.task_manager.get_task("00000000-0000-4000-8000-000000000000")
            return first, running, during, connected_workers, listed, final, unknown, done

    first, running, during, connected, listed, final, unknown, done = run(main())
    assert first.status in (TaskStatus.PENDING, TaskStatus.ANNOUNCED, TaskStatus.ASSIGNED, TaskStatus.RUNNING)
    assert during.status == TaskStatus.RUNNING and during.worker == "gatekeeper" and not during.success
    assert {(w.name, w.role, w.skill) for w in connected} == {
        ("gatekeeper", "gate", 4),
        ("text_worker", "multiply", None),
    }
    assert {w.name: w.load for w in listed}["gatekeeper"] == 1
    assert final.status == TaskStatus.COMPLETED and final.output == "done"
    assert unknown is None


# --- Common patterns: worker pool, task batching, result aggregation --------
def test_worker_pool_batching_and_aggregation():
    num_workers, batch_size = 4, 40

    async def aggregate_results(results):
        success_count = sum(1 for r in results if r.success)
        return {
            "success_rate": success_count / len(results),
            "total_tasks": len(results),
            "successful_tasks": success_count,
        }

    class Batch(ProcessWorker):
        async def _processor(self, request, time):
            await asyncio.sleep(0.01)
            return {"batch_id": request.input.batch_id, "worker": self.name}

    async def main():
        workers = [Batch(f"Worker-{i}", role="worker", skill=5) for i in range(num_workers)]
        async with TaskProcessingPlayground().play(workers=workers) as playground:
            task_batch = [
                Task(name=f"Batch-{i}", processor="worker", input_data={"batch_id": i})
                for i in range(batch_size)
            ]
            results = await asyncio.gather(*[playground.add_and_execute_task(task) for task in task_batch])
            group = await playground.execute_task_group(
                [Task(name=f"Group-{i}", processor="worker", input_data={"batch_id": i}) for i in range(8)]
            )
            return results, await aggregate_results(results), group

    results, summary, group = run(main())
    assert summary == {"success_rate": 1.0, "total_tasks": batch_size, "successful_tasks": batch_size}
    assert [r.output.batch_id for r in results] == list(range(batch_size))
    assert len({r.worker for r in results}) == num_workers
    assert sorted(r.output["batch_id"] for r in group.values()) == list(range(8))


def test_error_handling_section_adds_the_last_task_again():
    """The tutorial's error-handling snippet adds `task`, the last task of
    its loop, once more: as in Ceylon, it runs again (under a new id)."""

    async def main():
        async with TaskProcessingPlayground().play(
            workers=[TextProcessor("t", role="multiply")]
        ) as active_playground:
            task = Task(name="Process Data", processor="multiply", input_data={"data": 2})
            first = await active_playground.add_and_execute_task(task=task, wait_for_completion=True)
            first_id = task.id
            try:
                result = await active_playground.add_and_execute_task(task)
                if not result.success:
                    print(f"Task failed: {result.error}")
            except Exception as e:
                print(f"Error executing task: {e}")
                raise
            return first, first_id, result, task.id

    first, first_id, again, again_id = run(main())
    assert first.success and again.success and first.output == again.output == 10
    assert first_id != again_id and again.task_id == again_id
