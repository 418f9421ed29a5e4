"""taskmesh from Python: Ceylon's TaskProcessingPlayground over a real
peer-to-peer mesh (libp2p), with the Rust library doing the networking,
the Raft-replicated ledger and the scheduling.

Ceylon's tutorial code runs with only its imports changed::

    from taskmesh import ProcessWorker, ProcessRequest, Task, TaskResult, TaskProcessingPlayground

The differences from Ceylon are listed in python/README.md.
"""

import atexit

from . import _native
from ._data import EncodeError, Record
from ._native import ConfigError, DuplicateTaskError, MeshError, SubmitError
from ._node import Node, TaskManager, TaskProcessingPlayground, WorkerInfo
from ._task import Task, TaskResult, TaskStatus
from ._worker import PermanentError, ProcessRequest, ProcessWorker

# No node thread may touch Python once the interpreter exits (see
# python/src/bridge.rs): this stops them and waits for the attached ones.
atexit.register(_native.exiting)

__all__ = [
    "ConfigError",
    "DuplicateTaskError",
    "EncodeError",
    "MeshError",
    "Node",
    "PermanentError",
    "ProcessRequest",
    "ProcessWorker",
    "Record",
    "SubmitError",
    "Task",
    "TaskManager",
    "TaskProcessingPlayground",
    "TaskResult",
    "TaskStatus",
    "WorkerInfo",
]
