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
from typing import Any

import redis

from .clusterview import parse_cluster_nodes
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
    """What the chart's preStop does, by the same rules; True only once `master` has been demoted.

    A master serving slots asks its online replica with the highest offset to run CLUSTER FAILOVER (no
    FORCE: the replica catches up first, so no acknowledged write is lost), the next one if it refuses,
    then waits until it is a replica itself. Replicas still in their sync are waited for; a master
    without any replica returns at once. Bounded by `timeout` seconds of wall time, every call included.
    """
    deadline = time.monotonic() + timeout

    def call(address: NodeAddress, *command: str) -> Any:
        """One command, never past the deadline (a client of its own when less than its timeout is left)."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise redis.TimeoutError(f"the handover's {timeout:g} s are up")
        if left >= connector.timeout:
            return connector.client(address).execute_command(*command)
        bounded = Connector(connector.password, connector.address_map, timeout=left)
        try:
            return bounded.client(address).execute_command(*command)
        finally:
            bounded.close()

    try:
        if call(master, "ROLE")[0] != "master":
            return False
        if not any(n.is_myself and n.slots for n in parse_cluster_nodes(call(master, "CLUSTER", "NODES"))):
            return False  # serves no slots: nothing to hand over
    except redis.RedisError:
        return False
    for _ in range(100_000):  # the deadline ends this loop; the count is only a backstop
        try:
            replication = call(master, "INFO", "replication")  # slaveN entries parsed into dicts
        except redis.RedisError:
            replication = None
        if replication is not None:
            replicas = [v for k, v in replication.items() if k.startswith("slave") and isinstance(v, dict)]
            if not replicas:
                return False
            online = sorted(
                (r for r in replicas if r.get("state") == "online"),
                key=lambda r: int(r.get("offset", 0)),
                reverse=True,
            )
            for replica in online:
                try:
                    call(NodeAddress(str(replica["ip"]), int(replica["port"])), "CLUSTER", "FAILOVER")
                except redis.RedisError:
                    continue  # refused or unreachable: the next best one
                while time.monotonic() < deadline:
                    with contextlib.suppress(redis.RedisError):
                        if call(master, "ROLE")[0] == "slave":
                            return True
                    time.sleep(0.05)
                return False
            if online:
                return False  # every online replica refused
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return False
