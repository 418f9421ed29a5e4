"""Python workers: Ceylon's ``ProcessWorker`` and ``ProcessRequest``.

A worker's bids are data (its role, skill, slots and standing bid), so the
mesh answers auctions without running Python. Its ``_processor`` coroutine
runs on the asyncio loop that started its node; the node only hears the
outcome, so slow or blocking Python code never stalls the mesh itself (its
leases are renewed by the node's own threads).
"""

import asyncio
import time
import traceback
from typing import Any, Dict, Optional

from . import _native
from ._data import EncodeError, decode, encode
from ._task import DECLARED_FAILURE, TaskResult, TaskStatus

#: Lines of a traceback kept in a task's error.
TRACEBACK_LINES = 8
#: Longest error text a worker sends, in characters.
MAX_ERROR_CHARS = 4000
#: The skill of a worker that declares none: it takes tasks of any
#: difficulty (Ceylon's workers have no skill).
ANY_SKILL = 2**32 - 1


class PermanentError(Exception):
    """Raise it from ``_processor`` when no retry can help (bad input, say):
    the task fails at once, whatever its ``retries``. Any other exception is
    retried as long as the task's ``retries`` allow."""


class ProcessRequest:
    """One task handed to a worker's ``_processor``.

    - ``data``: ``input_data["data"]`` when the input is a dict with that
      key (Ceylon's convention), else the whole input.
    - ``input``: the whole ``input_data``.
    - ``task_id``, ``name``, ``task_type`` (the role), ``difficulty``,
      ``attempt`` (1 for the first).
    - ``dependency_data``: each dependency's :class:`TaskResult` by task id
      (``.output``, ``.success``, ``.name``).
    - ``dependencies``: each completed dependency's output by task name.

    JSON objects arrive as :class:`taskmesh.Record`: dicts whose keys are
    also attributes, so a dataclass sent as ``data`` reads as before
    (``request.data.difficulty``).
    """

    def __init__(self, raw: dict):
        self.task_id: str = raw["task_id"]
        self.id = self.task_id
        self.name: str = raw["name"]
        self.task_type: str = raw["role"]
        self.difficulty: int = raw["difficulty"]
        self.attempt: int = raw["attempt"]
        self.input: Any = decode(raw["input"])
        has_data = isinstance(self.input, dict) and "data" in self.input
        self.data: Any = self.input["data"] if has_data else self.input
        self.dependency_data: Dict[str, TaskResult] = {}
        self.dependencies: Dict[str, Any] = {}
        for dep in raw["dependencies"]:
            report = {
                "id": dep["id"],
                "name": dep["name"],
                "status": TaskStatus.COMPLETED if dep["ok"] else TaskStatus.FAILED,
                "output": dep.get("output"),
                "error": dep.get("error"),
            }
            result = TaskResult(report)
            self.dependency_data[dep["id"]] = result
            if dep["ok"]:
                self.dependencies[dep["name"]] = result.output

    def __repr__(self) -> str:
        return f"ProcessRequest(task_id={self.task_id!r}, name={self.name!r}, data={self.data!r})"


class ProcessWorker:
    """A worker: subclass it and write ``async def _processor(self, request,
    time)``.

    ``_processor`` gets a :class:`ProcessRequest` and the time (milliseconds
    since the epoch), and returns the task's output (JSON data), or Ceylon's
    ``(success, value)``: ``(True, value)`` completes the task and
    ``(False, value)`` fails it. An exception fails the attempt: it is
    retried while the task's ``retries`` allow, unless it is a
    :class:`PermanentError`; the error carries the traceback's last lines.
    When the task is cancelled or passes its timeout, the coroutine is
    cancelled (``asyncio.CancelledError`` is raised at its ``await``).

    - ``name``: unique on its node. ``role``: which tasks it takes.
    - ``skill``: it is awarded only tasks with ``difficulty <= skill``. When
      not given, a ``skill_level`` attribute set by the subclass (as in
      Ceylon's tutorial) counts; without either, it takes any difficulty.
    - ``slots``: how many tasks it runs at once (default 1).
    - ``standing_bid``: the hardest task it takes at once, without an
      auction, while a slot is free (default: up to its skill); ``None``
      bids in each task's auction instead. Either way the admin awards each
      task to exactly one worker: the least loaded, then the lowest
      sufficient skill.
    """

    def __init__(
        self,
        name: str,
        role: str,
        *,
        skill: Optional[int] = None,
        slots: int = 1,
        standing_bid: Any = "skill",
    ):
        self.name = name
        self.role = role
        self.skill = skill
        self.slots = slots
        self.standing_bid = standing_bid

    async def _processor(self, request: ProcessRequest, time: int) -> Any:
        raise NotImplementedError(
            f"{type(self).__name__} must define async def _processor(self, request, time)"
        )

    def _declared_skill(self) -> int:
        skill = self.skill if self.skill is not None else getattr(self, "skill_level", None)
        if skill is None:
            return ANY_SKILL
        if isinstance(skill, bool) or not isinstance(skill, int) or not 0 <= skill <= ANY_SKILL:
            raise ValueError(
                f"worker {self.name!r}: skill must be a whole number from 0 to {ANY_SKILL}, not {skill!r}"
            )
        return skill

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, role={self.role!r}, skill={self._declared_skill()})"
        )


def describe(e: BaseException) -> str:
    """An exception as a task error: its type and message, then the
    traceback's last lines (from the worker's own frames, not taskmesh's)."""
    tb = e.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    frames = "".join(traceback.format_tb(tb)).rstrip().splitlines()
    try:
        # "<exception str() failed>" when the exception's __str__ raises.
        text = "".join(traceback.format_exception_only(type(e), e)).rstrip()
    except Exception:
        text = f"{type(e).__name__}: <unprintable>"
    if frames:
        text += "\nTraceback (most recent call last):\n" + "\n".join(frames[-TRACEBACK_LINES:])
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def _cancelled_from_inside() -> bool:
    """Whether a CancelledError in the running task came from its own code
    rather than from a cancel() of the task (Python 3.11 and newer count
    those; before 3.11 every CancelledError counts as a cancel() of the
    task)."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return cancelling is not None and cancelling() == 0


class Adapter:
    """What the native layer drives: a worker's bidding data, and
    ``_dispatch``, called from the node's blocking pool, which runs
    ``_processor`` on ``loop`` and reports through ``done.send(ok, text,
    retryable)`` or ``done.cancelled()``."""

    def __init__(self, worker: ProcessWorker, loop: asyncio.AbstractEventLoop):
        if not isinstance(worker, ProcessWorker):
            raise TypeError(f"workers must be ProcessWorker instances, not {type(worker).__name__}")
        for field in ("name", "role"):
            if not isinstance(getattr(worker, field), str):
                raise ValueError(f"a worker's {field} must be a str, not {getattr(worker, field)!r}")
        self.worker = worker
        self.loop = loop
        #: Futures of the coroutines running now.
        self.running: set = set()
        self.name = worker.name
        self.role = worker.role
        self.skill = worker._declared_skill()
        slots, most = worker.slots, _native.MAX_WORKER_SLOTS
        if isinstance(slots, bool) or not isinstance(slots, int) or not 1 <= slots <= most:
            raise ValueError(
                f"worker {worker.name!r}: slots must be a whole number from 1 to {most}, not {slots!r}"
            )
        self.slots = slots
        standing = worker.standing_bid
        if standing == "skill":
            standing = self.skill
        if standing is not None and (
            isinstance(standing, bool) or not isinstance(standing, int) or standing < 0
        ):
            raise ValueError(
                f"worker {worker.name!r}: standing_bid must be a difficulty >= 0 or None, not {standing!r}"
            )
        self.standing_bid = None if standing is None else min(standing, self.skill)

    def _dispatch(self, raw: dict, done: Any):
        """Starts ``_processor`` on the loop; None when the loop is closed
        (the node then leaves the mesh, and the task runs elsewhere)."""
        work = self._run(raw, done)
        try:
            running = asyncio.run_coroutine_threadsafe(work, self.loop)
        except RuntimeError:  # the loop is closed
            work.close()
            return None
        self.running.add(running)
        running.add_done_callback(self.running.discard)
        return running

    def cancel_running(self) -> None:
        """Cancels the coroutines still running (their node has stopped)."""
        for running in list(self.running):
            running.cancel()

    async def _run(self, raw: dict, done: Any) -> None:
        try:
            await self._attempt(raw, done)
        except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
            raise
        except BaseException as e:  # a bug here must not leave the task running
            done.send(False, f"taskmesh could not report the outcome: {describe(e)}", True)

    async def _attempt(self, raw: dict, done: Any) -> None:
        try:
            request = ProcessRequest(raw)
            answer = await self.worker._processor(request, int(time.time() * 1000))
        except asyncio.CancelledError as e:
            if _cancelled_from_inside():
                # The worker's own code cancelled something and let the
                # error out: an ordinary failure.
                done.send(False, describe(e), True)
                return
            # The mesh cancelled it (its outcome no longer counts), or the
            # loop is shutting down (the node leaves; the task runs
            # elsewhere).
            done.cancelled()
            raise
        except PermanentError as e:
            done.send(False, describe(e), False)
            return
        except Exception as e:
            done.send(False, describe(e), True)
            return
        except BaseException as e:
            # KeyboardInterrupt, SystemExit, or a class of the user's own:
            # the task learns of it, and the program's own handling goes on.
            done.send(False, describe(e), True)
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            return
        ok = True
        if isinstance(answer, tuple) and len(answer) == 2 and isinstance(answer[0], bool):
            ok = answer[0]
            answer = list(answer)
        what = f"the output of task {raw['name']!r} (worker {self.name!r})"
        try:
            text = encode(answer, what).decode("utf-8")
        except EncodeError as e:
            done.send(False, str(e), False)
            return
        if ok:
            done.send(True, text, False)
            return
        # The answer's value, as JSON: `text` is "[false,<value>]".
        value = text[len("[false,") : -1]
        size, most = len(value.encode("utf-8")), _native.MAX_ERROR_BYTES - len(DECLARED_FAILURE)
        if size > most:
            done.send(
                False,
                f"the worker answered (False, ...) with {size} bytes, over the {most} a failure carries",
                True,
            )
        else:
            done.send(False, DECLARED_FAILURE + value, True)
