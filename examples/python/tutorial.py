"""Ceylon's task-playground tutorial, on taskmesh.

Run it (after `pip install .` in the repository):

    python examples/python/tutorial.py

The code is Ceylon's tutorial with only its imports changed. Three workers
with skills 3, 6 and 9 run in one playground; each task is awarded to one
worker able to do it (skill >= the task's difficulty), so every task
succeeds. Then the tutorial's other sections: dependencies, error
handling, status while running, connected workers and batching.
"""

import asyncio
from dataclasses import dataclass

from taskmesh import ProcessRequest, ProcessWorker, Task, TaskProcessingPlayground, TaskResult


@dataclass
class WorkTask:
    id: int
    description: str
    difficulty: int


class WorkerProcessor(ProcessWorker):
    def __init__(self, name: str, skill_level: int):
        super().__init__(name=name, role="worker")
        self.skill_level = skill_level

    async def _processor(self, request: ProcessRequest, time: int) -> tuple[bool, dict]:
        task = request.data
        await asyncio.sleep(task.difficulty / 10)
        success = self.skill_level >= task.difficulty
        return success, {
            "task_id": task.id,
            "worker": self.name,
            "difficulty": task.difficulty,
        }


class TextProcessor(ProcessWorker):
    async def _processor(self, request: ProcessRequest, time: int):
        return request.data * 5


class AggregateProcessor(ProcessWorker):
    async def _processor(self, request: ProcessRequest, time: int):
        data = request.data or 0
        for d in request.dependency_data.values():
            data += d.output
        return data


class FlakyProcessor(ProcessWorker):
    async def _processor(self, request: ProcessRequest, time: int):
        raise ValueError(f"cannot process {request.data!r}")


async def main():
    tasks = [
        WorkTask(id=1, description="Simple calculation", difficulty=2),
        WorkTask(id=2, description="Data analysis", difficulty=5),
        WorkTask(id=3, description="ML model training", difficulty=8),
    ]

    playground = TaskProcessingPlayground(name="task_playground", port=0)
    workers = [
        WorkerProcessor("Junior", skill_level=3),
        WorkerProcessor("Intermediate", skill_level=6),
        WorkerProcessor("Senior", skill_level=9),
        TextProcessor("text_worker", role="multiply"),
        AggregateProcessor("aggregate_worker", role="aggregate"),
        FlakyProcessor("flaky_worker", role="flaky"),
    ]

    async with playground.play(workers=workers) as active_playground:
        # Create and execute tasks, one after the other.
        ceylon_tasks = [
            Task(name=f"Task {task.id}", processor="worker", input_data={"data": task}) for task in tasks
        ]
        results = []
        for task in ceylon_tasks:
            result: TaskResult = await active_playground.add_and_execute_task(
                task=task, wait_for_completion=True
            )
            results.append(result)

        success_count = sum(1 for r in results if r.success)
        success_rate = success_count / len(results)
        print("\nResults:")
        for task, result in zip(tasks, results):
            worker_name = result.output[1].get("worker")
            print(f"Task {task.id} processed by {worker_name} - {'Success' if result.success else 'Failure'}")
            print(f"    why: {result.reason}")
        print(f"\nSuccess rate: {success_rate:.2%}")

        # Task dependencies: the aggregator receives its dependencies' outputs.
        task1 = Task(name="Process Data 1", processor="multiply", input_data={"data": 5})
        task2 = Task(name="Process Data 2", processor="multiply", input_data={"data": 10})
        task3 = Task(name="Aggregate Results", processor="aggregate", dependencies={task1.id, task2.id})
        for task in [task1, task2, task3]:
            task_result = await active_playground.add_and_execute_task(task=task, wait_for_completion=True)
            print(f"\n{task.name}: {task_result.output}")

        # Error handling.
        try:
            result = await active_playground.add_and_execute_task(
                Task(name="Doomed", processor="flaky", input_data={"data": "x"})
            )
            if not result.success:
                print(f"\nTask failed: {result.error}")
        except Exception as e:
            print(f"Error executing task: {e}")

        # Monitor task states.
        slow = Task(name="Slow", processor="worker", input_data={"data": WorkTask(4, "Slow work", 9)})
        await active_playground.add_and_execute_task(slow, wait_for_completion=False)
        task_status = playground.task_manager.get_task(slow.id)
        print(f"\nTask status: {task_status.status}")

        # Inspect worker connections.
        connected_workers = playground.llm_agents
        print(f"Connected workers: {connected_workers}")

        # Task batching.
        task_batch = [
            Task(name=f"Batch-{i}", processor="multiply", input_data={"batch_id": i, "data": i})
            for i in range(10)
        ]
        results = await asyncio.gather(*[playground.add_and_execute_task(task) for task in task_batch])
        print(f"\nBatch outputs: {[r.output for r in results]}")
        print(f"Slow task, later: {playground.task_manager.get_task(slow.id).status}")


if __name__ == "__main__":
    asyncio.run(main())
