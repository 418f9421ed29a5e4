"""A Python worker joining a mesh of taskmesh nodes.

Start a mesh, then this worker, then submit tasks from anywhere:

    taskmesh node --listen /ip4/127.0.0.1/tcp/7411 --no-mdns
        # prints "listening on /ip4/127.0.0.1/tcp/7411/p2p/12D3KooW..."
    python examples/python/remote_worker.py --join /ip4/127.0.0.1/tcp/7411/p2p/12D3KooW... --skill 9
    taskmesh submit examples/tutorial.toml --join /ip4/127.0.0.1/tcp/7411/p2p/12D3KooW... --no-mdns

(`--mdns` instead of `--join` finds the mesh on the LAN.) The worker bids
with its skill like any Rust or command worker: the admin awards it the
tasks of its role it is the best fit for. It answers with what it did, as
JSON; Ctrl-C stops it after its running task ends.
"""

import argparse
import asyncio
import signal

from taskmesh import MeshError, Node, ProcessRequest, ProcessWorker


class PythonWorker(ProcessWorker):
    def __init__(self, name: str, role: str, skill: int, work: float):
        super().__init__(name=name, role=role, skill=skill)
        self.work = work

    async def _processor(self, request: ProcessRequest, time: int) -> dict:
        await asyncio.sleep(self.work * request.difficulty)
        return {"worker": self.name, "task": request.name, "input": request.input}


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--join", action="append", default=[], metavar="MULTIADDR", help="a node to join (repeatable)"
    )
    p.add_argument("--mdns", action="store_true", help="find the mesh on the LAN")
    p.add_argument("--name", default="Pythonista")
    p.add_argument("--role", default="worker")
    p.add_argument("--skill", type=int, default=9)
    p.add_argument("--work", type=float, default=0.01, help="seconds of work per unit of difficulty")
    p.add_argument("--psk", metavar="FILE", help="the mesh key, when the mesh has one")
    p.add_argument("--mesh", default="default")
    args = p.parse_args()
    if not args.join and not args.mdns:
        p.error("give --join MULTIADDR or --mdns")

    worker = PythonWorker(args.name, args.role, args.skill, args.work)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Node([worker], join=args.join, mdns=args.mdns, psk_file=args.psk, mesh=args.mesh) as node:
        try:
            admin = await node.wait_for_admin(60)
        except MeshError as e:
            raise SystemExit(f"remote_worker: {e}") from None
        print(
            f"worker {worker.name} (role {worker.role}, skill {worker.skill}) "
            f"on {node.peer_id}; admin {admin}",
            flush=True,
        )
        await stop.wait()
        print("stopping: the running task finishes first", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
