"""How a drill takes a node down. Each way leaves bringing it back to whatever supervises it.

- PodFaults: delete the pod (grace period 0 for a crash; the normal grace period, so the chart's
  preStop hands the slots over, for a graceful stop); the StatefulSet recreates it.
- CommandFaults: for `--nodes` (Redis outside Kubernetes, under systemd or similar): SHUTDOWN NOW for
  a crash; for a graceful stop, first what the chart's preStop does (CLUSTER FAILOVER on the most
  up-to-date online replica, then wait until demoted), then SHUTDOWN.
"""

from __future__ import annotations

import contextlib
import time

import redis

from .drill import Mode
from .nodes import Connector, NodeAddress
from .plan import Member


class CommandFaults:
    def __init__(self, connector: Connector, handover_timeout: float = 25.0) -> None:
        self.connector = connector
        self.handover_timeout = handover_timeout

    def inject(self, target: Member, mode: Mode) -> None:
        client = self.connector.client(target.address)
        if mode == "graceful":
            hand_over(self.connector, target.address, self.handover_timeout)
        # The node closes the connection while exiting: that is the point.
        with contextlib.suppress(redis.ConnectionError):
            client.execute_command("SHUTDOWN", "NOSAVE", "NOW") if mode == "crash" else client.shutdown()


def hand_over(connector: Connector, master: NodeAddress, timeout: float) -> bool:
    """The preStop handover: the best online replica runs CLUSTER FAILOVER; wait until demoted."""
    client = connector.client(master)
    replication = client.info("replication")
    online = [
        value
        for key, value in replication.items()
        if key.startswith("slave") and isinstance(value, dict) and value.get("state") == "online"
    ]
    if not online:
        return False
    best = max(online, key=lambda r: int(r.get("offset", 0)))
    connector.client(NodeAddress(str(best["ip"]), int(best["port"]))).execute_command("CLUSTER", "FAILOVER")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.execute_command("ROLE")[0] == "slave":
            return True
        time.sleep(0.05)
    return False
