"""Stand-ins for what brings a node back in production: a supervisor restarting exited processes
(the StatefulSet controller, systemd), and the faults a drill injects into local processes."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

from helm_redis.localnodes import LocalNodes
from helm_redis.nodes import Connector
from helm_redis.nodesconf import prepare_node
from helm_redis.plan import Member

PRESTOP = Path(__file__).resolve().parents[2] / "charts" / "redis-cluster" / "files" / "prestop.sh"


class Supervisor(threading.Thread):
    """Restarts any node whose process has exited, after `delay` seconds, running the pod's start step
    first (as a recreated pod does)."""

    def __init__(self, nodes: LocalNodes, delay: float = 1.0) -> None:
        super().__init__(daemon=True, name="supervisor")
        self.nodes = nodes
        self.delay = delay
        self.stop_event = threading.Event()
        self.restarts = 0
        self.log: list[str] = []

    def run(self) -> None:
        while not self.stop_event.is_set():
            for node in self.nodes.nodes:
                if node.process is not None and node.process.poll() is not None:
                    time.sleep(self.delay)
                    node.process = None
                    self.start_step(node)
                    node.start()
                    self.restarts += 1
            time.sleep(0.05)

    def start_step(self, node) -> None:
        addresses = {n.hostname: n.ip for n in self.nodes.nodes}
        connector = Connector(node.users.admin_credentials if node.users else None, timeout=1.0, tls=node.tls)
        try:
            prepare_node(
                node.nodes_conf, 5, 15, connector, addresses.get, lambda message: self.log.append(message)
            )
        finally:
            connector.close()

    def __enter__(self) -> Supervisor:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop_event.set()
        self.join(timeout=10)


class ProcessFaults:
    """crash: SIGKILL (a pod deleted with grace period 0). graceful: the chart's preStop, then SIGTERM."""

    def __init__(self, nodes: LocalNodes) -> None:
        self.nodes = nodes
        self.prestop_output = ""

    def inject(self, target: Member, mode: str) -> None:
        node = self.nodes.by_address(target.address)
        if mode == "graceful":
            done = subprocess.run(
                ["sh", str(PRESTOP)],
                env={**os.environ, "REDIS_HOST": node.ip, "REDIS_PORT": str(node.port)},
                capture_output=True,
                text=True,
                timeout=60,
            )
            self.prestop_output = done.stdout
        assert node.process is not None
        node.process.kill() if mode == "crash" else node.process.terminate()
