"""Three private RabbitMQ nodes clustered on this machine: `make cluster` and the cluster tests.

The nodes run the installed `rabbitmq-server` as in rabbit_node.py, under one folder, with one
Erlang cookie and one epmd of their own; the machine's broker is never touched. The folder keeps
`cluster.json`, so `make cluster-down` (another process) finds the nodes to stop.

    python -m tests.support.cluster up DIR     start (or find running) and print AMQP_URL
    python -m tests.support.cluster down DIR   stop the nodes and delete DIR
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

from tests.support.rabbit_node import NodeUnavailable, RabbitNode, free_base, kill_epmd

SIZE = 3


class RabbitCluster:
    def __init__(self, workdir: Path, nodes: list[RabbitNode], epmd_port: int) -> None:
        self.workdir = workdir
        self.nodes = nodes
        self.epmd_port = epmd_port

    @classmethod
    def new(cls, workdir: Path, size: int = SIZE) -> RabbitCluster:
        home, mark = workdir / "home", uuid.uuid4().hex[:6]
        home.mkdir(parents=True, exist_ok=True)
        cookie = home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16))
        cookie.chmod(0o400)
        epmd_port = free_base()
        nodes = [
            RabbitNode(
                workdir / f"node-{i}", name=f"cluster{i}-{mark}@localhost", epmd_port=epmd_port, home=home
            )
            for i in range(1, size + 1)
        ]
        return cls(workdir, nodes, epmd_port)

    @classmethod
    def load(cls, workdir: Path) -> RabbitCluster:
        state = json.loads((workdir / "cluster.json").read_text())
        nodes = [
            RabbitNode(
                workdir / f"node-{i}",
                name=n["name"],
                base=n["port"],
                epmd_port=state["epmd_port"],
                home=workdir / "home",
            )
            for i, n in enumerate(state["nodes"], 1)
        ]
        return cls(workdir, nodes, state["epmd_port"])

    @property
    def url(self) -> str:
        """AMQP_URL for the hub: every node, comma-separated."""
        return ",".join(node.url for node in self.nodes)

    async def start(self) -> RabbitCluster:
        """Start the nodes, then join the second and later ones to the first."""
        (self.workdir / "cluster.json").write_text(json.dumps({
            "epmd_port": self.epmd_port,
            "nodes": [{"name": n.name, "port": n.port} for n in self.nodes]}))  # fmt: skip
        self.nodes[0]._launch()  # the first starts the shared epmd, before the others look for it
        await self.nodes[0].until_answering()
        await asyncio.gather(*(node.start() for node in self.nodes[1:]))
        for node in self.nodes[1:]:
            await node.stop_app()
            await asyncio.to_thread(node.ctl, "join_cluster", self.nodes[0].name)
            await node.start_app()
        return self

    def running(self) -> list[RabbitNode]:
        return [node for node in self.nodes if node.running()]

    def members(self) -> list[str]:
        """The running members, as the first running node sees them."""
        status = self.running()[0].ctl("cluster_status", "--formatter", "json")
        return sorted(json.loads(status)["running_nodes"])

    def leader_of(self, queue: str) -> RabbitNode:
        """The node leading quorum queue `queue`."""
        queues = json.loads(
            self.running()[0].ctl("list_queues", "-q", "name", "leader", "--formatter", "json")
        )
        leader = next(q["leader"] for q in queues if q["name"] == queue)
        return next(node for node in self.nodes if node.name == leader)

    async def until_safe_to_lose(self, node: RabbitNode) -> None:
        """Wait until every quorum queue keeps a majority without `node`: a node started again
        has caught up with its queues."""
        await asyncio.to_thread(
            node.ctl, "await_online_quorum_plus_one", "-t", "120", tool="rabbitmq-upgrade"
        )

    async def until_in_sync(self, queues: list[str], within: float = 120) -> None:
        """Wait until every member of each quorum queue of `queues` is a leader or follower and
        has committed what its leader had when we began: a node started again has caught up.
        (Its members coming back "online" is not enough: one still recovering cannot vote.)"""
        deadline = time.monotonic() + within
        for queue in queues:
            target = None
            while True:
                status = ("quorum_status", queue, "--formatter", "json")
                node = self.running()[0]
                members = json.loads(await asyncio.to_thread(node.ctl, *status, tool="rabbitmq-queues"))
                states = {m["Raft State"] if isinstance(m["Raft State"], str) else "down" for m in members}
                leader = [m["Commit Index"] for m in members if m["Raft State"] == "leader"]
                target = target if target is not None or not leader else leader[0]
                if (
                    states <= {"leader", "follower"}
                    and target is not None
                    and (min(m["Commit Index"] for m in members) >= target)
                ):
                    break
                assert time.monotonic() < deadline, f"{queue} not in sync in {within} s: {members}"
                await asyncio.sleep(0.5)

    async def restart(self, node: RabbitNode, queues: list[str]) -> None:
        """Stop `node` as an operator would, once it is safe to lose, and start it again on its
        data: it rejoins the cluster, and `queues` catch up on it."""
        await self.until_safe_to_lose(node)
        await asyncio.to_thread(node.ctl, "stop")
        await node.start()
        await self.until_in_sync(queues)

    def remove(self) -> None:
        for node in self.nodes:
            node.remove()
        kill_epmd(self.epmd_port)
        shutil.rmtree(self.workdir, ignore_errors=True)


async def up(workdir: Path) -> str:
    if (workdir / "cluster.json").exists():
        cluster = RabbitCluster.load(workdir)
        if all(node.running() for node in cluster.nodes):
            return cluster.url
        cluster.remove()  # half there: start again from nothing
    cluster = RabbitCluster.new(workdir)
    try:
        await cluster.start()
    except (NodeUnavailable, subprocess.SubprocessError, OSError):
        cluster.remove()
        raise
    return cluster.url


def main(argv: list[str]) -> None:
    if len(argv) != 2 or argv[0] not in ("up", "down"):
        sys.exit("usage: python -m tests.support.cluster up|down DIR")
    action, workdir = argv[0], Path(argv[1])
    if action == "down":
        if (workdir / "cluster.json").exists():
            RabbitCluster.load(workdir).remove()
        print(f"no cluster left in {workdir}")
        return
    try:
        url = asyncio.run(up(workdir))
    except NodeUnavailable as exc:
        sys.exit(f"cluster: {exc}")
    print(f"three RabbitMQ nodes clustered in {workdir}; `make cluster-down` removes them. Use:")
    print(f"AMQP_URL={url}")


if __name__ == "__main__":
    main(sys.argv[1:])
