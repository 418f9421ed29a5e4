"""Tasks, their results and statuses: Ceylon's ``Task``, ``TaskResult`` and
``TaskStatus``, with taskmesh's difficulty, retries, timeouts, priorities
and trigger rules."""

import enum
import uuid
from typing import Any, Iterable, Optional, Union

from . import _native
from ._data import decode, encode

#: The prefix of the error text a worker's ``(False, value)`` answer
#: becomes; ``value`` follows as JSON, and comes back as the result's
#: ``output``.
DECLARED_FAILURE = "the worker answered (False, ...): "


class TaskStatus(str, enum.Enum):
    """Where a task is in its life; equal to its lowercase name as a str
    (``TaskStatus.RUNNING == "running"``)."""

    PENDING = "pending"
    """Accepted; waiting for its dependencies or for a capable worker."""
    ANNOUNCED = "announced"
    """Ready and offered to workers: the auction is open."""
    ASSIGNED = "assigned"
    """Awarded to a worker, which has not yet said it started."""
    QUEUED = "queued"
    """Awarded into a busy worker's queue."""
    RUNNING = "running"
    """The worker is processing it."""
    COMPLETED = "completed"
    """Finished with an output."""
    FAILED = "failed"
    """Finished with an error."""
    CANCELLED = "cancelled"
    """Cancelled, or a dependency it needed was."""
    SKIPPED = "skipped"
    """Never ran: its trigger rule did not fire."""

    def __str__(self) -> str:
        return self.value

    @property
    def is_final(self) -> bool:
        """Nothing more will happen to the task."""
        return self in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.SKIPPED)


TaskRef = Union[str, "Task"]


def task_id(task: TaskRef) -> str:
    """The id of a :class:`Task` or an id string."""
    return task.id if isinstance(task, Task) else str(task)


#: Triggers a task may name (see :class:`Task`).
TRIGGERS = ("all_success", "one_failed", "all_done")


def _seconds(value: Optional[float], what: str, zero: Optional[str] = "no limit") -> Optional[float]:
    """Seconds from 0 to 30 days (None stays None); ``zero`` says what 0
    means, for the error."""
    if value is None:
        return None
    top = _native.MAX_TIMEOUT_SECONDS
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= top:
        low = f"0 ({zero})" if zero else "0"
        raise ValueError(f"{what} must be a number of seconds from {low} to {top} (30 days), not {value!r}")
    return float(value)


def _uuid(value: Any, what: str) -> str:
    try:
        return str(uuid.UUID(value)) if isinstance(value, str) else str(uuid.UUID(str(value)))
    except ValueError:
        raise ValueError(f"{what} must be a task or a task id (a UUID string), not {value!r}") from None


def _whole(value: Any, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{what} must be a whole number from {low} to {high}, not {value!r}")
    return value


def _difficulty_in(input_data: Any) -> Optional[int]:
    """The ``difficulty`` of ``input_data["data"]``, as Ceylon's tutorial
    puts it there (a dataclass field or a dict key), when it is a whole
    number >= 0."""
    if not isinstance(input_data, dict) or "data" not in input_data:
        return None
    data = input_data["data"]
    value = data.get("difficulty") if isinstance(data, dict) else getattr(data, "difficulty", None)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**32:
        return value
    return None


class Task:
    """A unit of work: Ceylon's ``Task(name=..., processor=role,
    input_data={...}, dependencies={ids})``, with an ``id`` (a UUID string).

    ``processor`` is the role: only workers of that role take the task.
    ``input_data`` is JSON data (dataclasses become their fields); a worker
    sees ``input_data["data"]`` as ``request.data`` and all of it as
    ``request.input``. ``dependencies`` are tasks or ids that must complete
    first; their results reach the worker as ``request.dependency_data``.

    taskmesh's own settings, all optional:

    - ``difficulty``: a worker needs ``skill >= difficulty`` to be awarded
      the task. When not given, the ``difficulty`` of ``input_data["data"]``
      is used if it has one (as in Ceylon's tutorial), else 0.
    - ``timeout``: seconds one attempt may run before it is cancelled and
      fails (``0``: no limit; default: the admin's).
    - ``queue_timeout``: seconds the task may wait ready without an award.
    - ``deadline``: seconds from submission to its end, whatever happens.
    - ``retries``: how often a failed attempt is retried, on another
      capable worker when there is one (default 0, at most 100). An
      exception and a ``(False, value)`` answer both fail an attempt; a
      :class:`PermanentError` fails the task at once.
    - ``max_attempts``: how many attempts may be lost to dead or paused
      workers before it fails (default 3).
    - ``priority``: higher runs first among ready tasks of its role.
    - ``trigger``: ``"all_success"`` (default), ``"one_failed"`` (a
      fallback: runs only when a dependency failed) or ``"all_done"`` (a
      cleanup: runs whatever they did).
    """

    def __init__(
        self,
        name: str,
        processor: Optional[str] = None,
        input_data: Any = None,
        dependencies: Optional[Iterable[TaskRef]] = None,
        *,
        role: Optional[str] = None,
        difficulty: Optional[int] = None,
        id: Optional[str] = None,
        timeout: Optional[float] = None,
        queue_timeout: Optional[float] = None,
        deadline: Optional[float] = None,
        retries: Optional[int] = None,
        max_attempts: Optional[int] = None,
        priority: int = 0,
        trigger: str = "all_success",
    ):
        if not isinstance(name, str):
            raise ValueError(f"a task's name must be a str, not {name!r}")
        for what, text in (("name", name), ("processor", processor if role is None else role)):
            if isinstance(text, str):
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError as e:
                    raise ValueError(f"task {name!r}: {what} is not text ({e})") from None
        role = processor if role is None else role
        if not isinstance(role, str):
            raise ValueError(
                f"task {name!r}: processor must be the role (a str) of the workers that take it, not {role!r}"
            )
        if difficulty is None:
            difficulty = _difficulty_in(input_data)
        this = f"task {name!r}"
        if isinstance(dependencies, (str, bytes, Task)) or not (
            dependencies is None or hasattr(dependencies, "__iter__")
        ):
            raise ValueError(
                f"{this}: dependencies must be a collection of tasks or ids, not {dependencies!r}"
            )
        if trigger not in TRIGGERS:
            raise ValueError(f"{this}: trigger must be one of {', '.join(TRIGGERS)}, not {trigger!r}")
        self.id = _uuid(id, f"{this}: id") if id is not None else str(uuid.uuid4())
        self.name = name
        self.processor = role
        self.input_data = input_data
        self.dependencies = {
            d.id if isinstance(d, Task) else _uuid(d, f"{this}: a dependency") for d in dependencies or ()
        }
        self.difficulty = _whole(0 if difficulty is None else difficulty, f"{this}: difficulty", 0, 2**32 - 1)
        self.timeout = _seconds(timeout, f"{this}: timeout")
        self.queue_timeout = _seconds(queue_timeout, f"{this}: queue_timeout")
        self.deadline = _seconds(deadline, f"{this}: deadline")
        most = _native.MAX_RETRIES
        self.retries = None if retries is None else _whole(retries, f"{this}: retries", 0, most)
        self.max_attempts = (
            None if max_attempts is None else _whole(max_attempts, f"{this}: max_attempts", 1, most)
        )
        self.priority = _whole(priority, f"{this}: priority", -_native.MAX_PRIORITY, _native.MAX_PRIORITY)
        self.trigger = trigger

    @property
    def role(self) -> str:
        """The role (Ceylon calls it ``processor``)."""
        return self.processor

    def _spec(self) -> dict:
        """The task as the native layer takes it; raises EncodeError."""
        what = f"input_data of task {self.name!r}"
        return {
            "id": self.id,
            "name": self.name,
            "role": self.processor,
            "difficulty": self.difficulty,
            "input": b"" if self.input_data is None else encode(self.input_data, what),
            "dependencies": sorted(self.dependencies),
            "timeout": self.timeout,
            "queue_timeout": self.queue_timeout,
            "deadline": self.deadline,
            "retries": self.retries,
            "max_attempts": self.max_attempts,
            "priority": self.priority,
            "trigger": self.trigger,
        }

    def __repr__(self) -> str:
        return (
            f"Task(name={self.name!r}, processor={self.processor!r}, "
            f"difficulty={self.difficulty}, id={self.id!r})"
        )


class TaskResult:
    """How a task ended (or where it is): Ceylon's ``TaskResult``.

    - ``success``: True only when the task completed. A worker that answers
      ``(False, value)`` fails its task (Ceylon reports that as a success).
    - ``output``: what the worker's ``_processor`` returned, as JSON data
      (a ``(bool, dict)`` answer reads as ``[bool, dict]``, so
      ``result.output[1]["worker"]`` works as in Ceylon); for a
      ``(False, value)`` answer, ``[False, value]``; otherwise None.
    - ``error``: why it failed (for an exception in ``_processor``: its type,
      message and the traceback's last lines), or None.
    - ``status``, ``worker`` (who ran it), ``attempts``, ``reason`` (why
      that worker was awarded it), ``elapsed`` (seconds since submission),
      ``task_id``, ``name``.
    """

    def __init__(self, report: dict):
        self.task_id: str = report["id"]
        self.name: str = report["name"]
        self.status = TaskStatus(report["status"])
        self.success: bool = self.status is TaskStatus.COMPLETED
        self.worker: Optional[str] = report.get("worker")
        self.attempts: int = report.get("attempts", 0)
        self.reason: Optional[str] = report.get("reason")
        self.elapsed: float = report.get("elapsed_ms", 0) / 1000.0
        self.error: Optional[str] = report.get("error")
        self.output: Any = None
        if report.get("output") is not None:
            self.output = decode(report["output"])
        worker_error = report.get("worker_error") or ""
        if worker_error.startswith(DECLARED_FAILURE):
            self.output = [False, decode(worker_error[len(DECLARED_FAILURE) :].encode("utf-8"))]

    @property
    def id(self) -> str:
        """The task's id."""
        return self.task_id

    def __repr__(self) -> str:
        detail = f"output={self.output!r}" if self.success else f"error={self.error!r}"
        return f"TaskResult(name={self.name!r}, status={self.status.value}, worker={self.worker!r}, {detail})"
