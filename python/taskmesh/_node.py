"""Nodes: taskmesh's :class:`Node` and Ceylon's
:class:`TaskProcessingPlayground` built on it."""

import asyncio
import contextlib
import uuid
from typing import Any, Dict, Iterable, List, Optional, Sequence

from . import _native
from ._task import Task, TaskRef, TaskResult, TaskStatus, _seconds, task_id
from ._worker import ANY_SKILL, Adapter, ProcessWorker

SubmitError = _native.SubmitError
DuplicateTaskError = _native.DuplicateTaskError
MeshError = _native.MeshError

#: The roles a node may take in the ledger (see :class:`Node`).
ADMIN_CHOICES = ("never", "eligible", "prefer")


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a str, not {value!r}")
    return value


def _flag(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{what} must be True or False, not {value!r}")
    return value


def _addresses(value: Any, what: str) -> List[str]:
    """Multiaddrs: one str, or an iterable of them."""
    if isinstance(value, str):
        return [value]
    try:
        return [_text(a, f"each {what} address") for a in value]
    except TypeError:
        raise ValueError(f"{what} must be a multiaddr or a list of them, not {value!r}") from None


#: Seconds a synchronous status call (``task_manager.get_task``,
#: ``llm_agents``) waits for the admin's answer.
STATUS_TIMEOUT = 5.0


class WorkerInfo:
    """A worker as the admin lists it: ``name``, ``role``, ``skill`` (None
    for a Python worker that declared none: it takes any difficulty),
    ``capacity`` (slots), ``load`` (tasks it holds now) and ``node`` (its
    peer id)."""

    def __init__(self, raw: dict):
        self.name: str = raw["name"]
        self.role: str = raw["role"]
        self.skill: Optional[int] = None if raw["skill"] == ANY_SKILL else raw["skill"]
        self.capacity: int = raw["capacity"]
        self.load: int = raw["load"]
        self.node: str = raw["node"]

    def __repr__(self) -> str:
        skill = "any" if self.skill is None else self.skill
        return (
            f"WorkerInfo(name={self.name!r}, role={self.role!r}, skill={skill}, "
            f"load={self.load}/{self.capacity})"
        )


class Node:
    """A taskmesh node: a peer of the mesh that hosts Python workers and
    makes calls to the admin.

    ``async with Node(workers, join=[addr]) as node:`` starts it (on the
    running asyncio loop, where its workers' coroutines run) and stops it,
    letting running tasks finish for ``grace`` seconds.

    - ``listen``: multiaddrs to listen on (default: any free port on
      127.0.0.1). ``join``: multiaddrs of nodes to join, as printed by
      ``taskmesh node`` ("listening on ..."). ``mdns``: find peers on the
      LAN. ``mesh``: the mesh name; ``psk_file``: the mesh key file
      (``taskmesh keygen``), required by a mesh that has one.
    - ``admin``: ``"never"`` (the default: hosts workers, keeps no ledger),
      ``"eligible"`` (may be elected admin) or ``"prefer"`` (founds a mesh).
    - ``no_worker_timeout``: seconds a task with no capable worker waits
      before it fails, while this node is admin (default 5).
    - ``task_timeout``: seconds an attempt may run when its task sets no
      ``timeout``, while this node is admin (default: no limit; 0: no
      limit).
    - ``http`` / ``metrics``: ``"127.0.0.1:PORT"`` to serve the mesh page /
      Prometheus metrics.
    - ``grace``: seconds ``stop()`` lets running tasks finish (default 10);
      coroutines still running then are cancelled.

    A node whose asyncio loop is gone while it runs (the loop closed, or
    ``asyncio.run`` returned without ``stop()``) leaves the mesh at its
    worker's next task, so that the admin gives its tasks to other workers.
    """

    def __init__(
        self,
        workers: Sequence[ProcessWorker] = (),
        *,
        listen: Iterable[str] = ("/ip4/127.0.0.1/tcp/0",),
        join: Iterable[str] = (),
        mdns: bool = False,
        mesh: str = "default",
        admin: str = "never",
        psk_file: Optional[str] = None,
        seed: Optional[int] = None,
        no_worker_timeout: Optional[float] = None,
        task_timeout: Optional[float] = None,
        http: Optional[str] = None,
        metrics: Optional[str] = None,
        grace: float = 10.0,
    ):
        self.workers = list(workers)
        if admin not in ADMIN_CHOICES:
            raise ValueError(f"admin must be one of {', '.join(map(repr, ADMIN_CHOICES))}, not {admin!r}")
        if seed is not None and (
            isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64
        ):
            raise ValueError(f"seed must be a whole number from 0 to 2**64 - 1, not {seed!r}")
        self._options = {
            "mesh": _text(mesh, "mesh"),
            "listen": _addresses(listen, "listen"),
            "join": _addresses(join, "join"),
            "mdns": _flag(mdns, "mdns"),
            "admin": admin,
            "seed": seed,
            "psk_file": None if psk_file is None else _text(str(psk_file), "psk_file"),
            "no_worker_timeout": _seconds(no_worker_timeout, "no_worker_timeout", zero=None),
            "task_timeout": _seconds(task_timeout, "task_timeout"),
            "http": None if http is None else _text(http, "http"),
            "metrics": None if metrics is None else _text(metrics, "metrics"),
        }
        if grace is None:
            raise ValueError("grace must be a number of seconds, not None")
        self.grace = _seconds(grace, "grace", zero=None)
        self._native = None
        self._adapters: List[Adapter] = []
        # Tasks whose submission is under way, by id: a dependent submitted
        # at the same time (asyncio.gather) waits for them.
        self._submitting: Dict[str, asyncio.Future[None]] = {}
        self._waits_on: Dict[str, List[str]] = {}

    # --- life ----------------------------------------------------------
    async def start(self) -> "Node":
        """Starts the node; raises ``ConfigError`` for bad settings (an
        address in use, a bad multiaddr, a worker's bad name)."""
        if self._native is not None:
            raise MeshError("the node is already started")
        loop = asyncio.get_running_loop()
        adapters = [Adapter(w, loop) for w in self.workers]
        self._adapters = adapters
        names = [a.name for a in adapters]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(
                f"worker names must be unique on a node: {', '.join(map(repr, twice))} given twice"
            )
        self._native = await _native.start(self._options, adapters)
        return self

    async def stop(self, grace: Optional[float] = None) -> None:
        """Stops the node, letting running tasks finish for ``grace``
        seconds (default: the node's)."""
        grace = self.grace if grace is None else _seconds(grace, "grace", zero=None)
        node, self._native = self._native, None
        if node is not None:
            await node.shutdown(grace)
        # Coroutines still running past the grace belong to no node now.
        for adapter in self._adapters:
            adapter.cancel_running()
        self._adapters = []

    async def __aenter__(self) -> "Node":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    @property
    def _node(self):
        if self._native is None:
            raise MeshError("the node is not started (use `async with`, or await start())")
        return self._native

    @property
    def peer_id(self) -> str:
        """This node's peer id."""
        return self._node.peer_id

    @property
    def addrs(self) -> List[str]:
        """Where other nodes join this one: multiaddrs with ``/p2p/<id>``."""
        return self._node.addrs

    @property
    def is_admin(self) -> bool:
        """Whether this node is the admin now."""
        return self._node.is_admin

    async def wait_for_admin(self, timeout: float = 30.0) -> str:
        """Waits until an admin is known; its peer id. Raises ``MeshError``
        at once, with the reasons, when every join address failed."""
        return await self._node.wait_for_admin(_seconds(timeout, "timeout", zero=None))

    async def wait_for_workers(self, n: int, timeout: float = 30.0) -> List[WorkerInfo]:
        """Waits until the admin lists at least ``n`` workers."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a whole number >= 0, not {n!r}")
        return [
            WorkerInfo(w)
            for w in await self._node.wait_for_workers(n, _seconds(timeout, "timeout", zero=None))
        ]

    # --- calls ---------------------------------------------------------
    async def submit(self, tasks: Iterable[Task]) -> List[str]:
        """Submits tasks as one batch (all are accepted or none); their
        ids. Raises ``SubmitError`` with the admin's reason, or
        ``EncodeError`` for an input that is not JSON data."""
        tasks = list(tasks)
        specs = [t._spec() for t in tasks]
        ids = [t.id for t in tasks]
        # Each id once: a repeated one is for the admin to refuse.
        mine = list(dict.fromkeys(i for i in ids if i not in self._submitting))
        loop = asyncio.get_running_loop()
        for i in mine:
            self._submitting[i] = loop.create_future()
        for t in tasks:
            self._waits_on[t.id] = [d for d in t.dependencies if d not in ids]
        try:
            await self._await_dependencies(tasks, ids)
            await self._node.submit(specs)
        except BaseException as e:
            for i in mine:
                fut = self._submitting.pop(i)
                fut.set_exception(SubmitError(f"task {i} was not submitted: {e}"))
                fut.exception()  # retrieved: no warning when nobody waits
            raise
        finally:
            for t in tasks:
                self._waits_on.pop(t.id, None)
        for i in mine:
            self._submitting.pop(i).set_result(None)
        return ids

    async def _await_dependencies(self, tasks: List[Task], ids: List[str]) -> None:
        # Let the other coroutines of an asyncio.gather register first.
        await asyncio.sleep(0)
        for t in tasks:
            for dep in t.dependencies:
                if dep in ids or dep not in self._submitting:
                    continue
                if self._reaches(dep, t.id):
                    raise SubmitError(
                        f"task {t.name!r} and its dependency {dep} depend on each other (a cycle)"
                    )
                await asyncio.shield(self._submitting[dep])

    def _reaches(self, start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            i = todo.pop()
            if i == goal:
                return True
            if i not in seen:
                seen.add(i)
                todo.extend(self._waits_on.get(i, ()))
        return False

    async def wait(self, tasks: Iterable[TaskRef]) -> List[TaskResult]:
        """Waits until every task has ended; their results, in order."""
        return [TaskResult(r) for r in await self._node.wait([task_id(t) for t in tasks])]

    async def status(self, task: TaskRef) -> Optional[TaskResult]:
        """A task's result as it stands now (``.status`` says where it
        is); None when the admin does not know it."""
        (report,) = await self._node.tasks([task_id(task)])
        return None if report is None else TaskResult(report)

    async def add_and_execute_task(self, task: Task, wait_for_completion: bool = True) -> TaskResult:
        """Ceylon's call: submits ``task`` and, when ``wait_for_completion``,
        waits for its end. Without waiting, returns its result as it stands
        right after submission (Ceylon returns None). A failed task is a
        result with ``success`` False; a refused submission raises
        ``SubmitError``.

        As in Ceylon, a task added again once it has ended runs again: it
        gets a new id (``task.id`` changes), since the admin keeps each id
        for one run. One added again while it is still pending or running
        is refused (``DuplicateTaskError``)."""
        try:
            await self.submit([task])
        except DuplicateTaskError:
            before = await self.status(task)
            if before is None or not before.status.is_final:
                raise
            task.id = str(uuid.uuid4())
            await self.submit([task])
        if wait_for_completion:
            (result,) = await self.wait([task])
            return result
        result = await self.status(task)
        if result is None:
            raise MeshError(f"task {task.id} was accepted, but the admin no longer knows it (evicted?)")
        return result

    async def execute_task_group(self, tasks: Iterable[Task]) -> Dict[str, TaskResult]:
        """Submits tasks as one batch and waits for all; results by id."""
        ids = await self.submit(tasks)
        return dict(zip(ids, await self.wait(ids)))

    async def cancel(self, task: TaskRef) -> str:
        """Cancels a task: its running coroutine gets CancelledError.
        ``"cancelled"``, ``"finished:<status>"`` when it had already ended,
        ``"evicted"`` or ``"unknown"``."""
        (outcome,) = await self._node.cancel([task_id(task)])
        return outcome

    async def connected_workers(self) -> List[WorkerInfo]:
        """The workers connected to the admin, with their load."""
        return [WorkerInfo(w) for w in await self._node.workers()]


class TaskManager:
    """Ceylon's ``playground.task_manager``: task status by id, at any
    moment."""

    def __init__(self, node: Node):
        self._node = node

    def get_task(self, task: TaskRef) -> Optional[TaskResult]:
        """The task as it stands now: ``.status`` (a :class:`TaskStatus`),
        ``.worker``, ``.output``, ``.error``; None when the admin does not
        know it. Synchronous, as in Ceylon: it blocks the calling thread
        (never the mesh) for at most ``STATUS_TIMEOUT`` seconds; in a
        coroutine, ``await playground.status(task)`` does not block."""
        i = task_id(task)
        pending = self._node._submitting.get(i)
        if pending is not None and not pending.done():
            return TaskResult({"id": i, "name": getattr(task, "name", i), "status": TaskStatus.PENDING.value})
        report = self._node._node.task_now(i, STATUS_TIMEOUT)
        return None if report is None else TaskResult(report)


class TaskProcessingPlayground(Node):
    """Ceylon's playground: a node that founds its own mesh (it becomes the
    admin), runs the given workers, and collects results.

    ``TaskProcessingPlayground(name=..., port=...)`` listens on
    ``host:port`` (default 127.0.0.1 and any free port; ``host="0.0.0.0"``
    lets other machines join). ``async with playground.play(workers=[...])
    as active:`` starts it and waits until it is admin with its workers
    registered; leaving the block stops it. Other keywords are
    :class:`Node`'s (``join``, ``mdns``, ``psk_file``, ``http``...).
    """

    def __init__(
        self, name: str = "task_processor", port: int = 0, *, host: str = "127.0.0.1", **options: Any
    ):
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be a whole number from 0 (any free port) to 65535, not {port!r}")
        family = "ip6" if ":" in _text(host, "host") else "ip4"
        options.setdefault("listen", (f"/{family}/{host}/tcp/{port}",))
        # Alone, it founds its mesh and is its admin. Joining a mesh (of
        # CLI nodes, say), it is a worker and client there: a short-lived
        # playground that became a voter would leave the mesh short of one.
        joining = bool(options.get("join")) or bool(options.get("mdns"))
        options.setdefault("admin", "never" if joining else "prefer")
        super().__init__(**options)
        self.name = name
        self.port = port
        self.task_manager = TaskManager(self)

    @contextlib.asynccontextmanager
    async def play(self, workers: Sequence[ProcessWorker] = ()):
        """Runs the playground with these workers for the ``async with``
        block."""
        self.workers = list(workers)
        await self.start()
        try:
            await self.wait_for_admin()
            if self.workers:
                await self.wait_for_workers(len(self.workers), 30.0)
            yield self
        finally:
            await self.stop()

    @property
    def llm_agents(self) -> List[WorkerInfo]:
        """Ceylon's list of connected workers (synchronous, like
        ``task_manager.get_task``); ``await connected_workers()`` in a
        coroutine."""
        return [WorkerInfo(w) for w in self._node.workers_now(STATUS_TIMEOUT)]
