"""How a drill takes a node down. Each way leaves bringing it back to whatever supervises it.

- CommandFaults: for `--nodes` (Redis outside Kubernetes, under systemd or similar), by Redis commands:
  graceful: first what the chart's preStop does (CLUSTER FAILOVER on the most up-to-date online replica,
  then wait until demoted), then SHUTDOWN; restart and crash: SHUTDOWN NOSAVE NOW (the supervisor decides
  how soon it comes back); hang: `freeze` (DEBUG SLEEP) for 2 x the node timeout + 3 s.
- PodFaults (release.py): the same on Kubernetes, where a crash also deletes the frozen pod with grace
  period 0 and a graceful stop is a normal pod deletion (the preStop hands over).

Freezing needs `enable-debug-command local` in redis.conf (the chart sets it): DEBUG is then accepted
from local connections only, and a port-forwarded connection reaches the pod from its own loopback.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from typing import Any

import redis

from .clusterview import parse_cluster_nodes
from .drill import Mode, node_timeout_seconds
from .errors import HelmRedisError, NodeUnreachable
from .nodes import Connector, NodeAddress, describe_failure
from .plan import Member

# A frozen node sleeps at most this long (whatever its node timeout says), in slices of at most this.
MAX_FREEZE_SECONDS = 120.0
SLICE_SECONDS = 5.0


class FaultNotInjected(HelmRedisError):
    """The node refused the fault (DEBUG disabled) or did not freeze."""


def hang_seconds(connector: Connector, address: NodeAddress) -> float:
    """How long a hang lasts: 2 x the node's cluster-node-timeout + 3 s (enough for the failure to be
    detected and a replica elected before it wakes), bounded to [5, MAX_FREEZE_SECONDS]."""
    timeout = node_timeout_seconds(connector, address)
    seconds = 2 * (timeout if timeout is not None else 15.0) + 3
    return min(max(seconds, 5.0), MAX_FREEZE_SECONDS)


def freeze(
    connector: Connector, address: NodeAddress, seconds: float, confirm: float = 5.0
) -> threading.Thread:
    """Freeze the node's process for `seconds` (DEBUG SLEEP, which blocks its event loop: clients, the
    cluster bus and replication all stop). DEBUG SLEEP blocks its connection too, so it is sent on a
    connection of its own from a background thread; returns once the node stops answering PING on a
    connection that answered just before (the freeze is in), bounded by `confirm` seconds. The thread
    ends when the node wakes or dies."""
    seconds = min(seconds, MAX_FREEZE_SECONDS)
    patient = connector.with_timeout(seconds + 30)
    try:
        sleeper = patient.dedicated(address)
        # Warm before the freeze: through a port-forward a new connection's first reply can be slow.
        probe = patient.dedicated(address)
        probe.ping()
    except redis.RedisError as error:
        raise NodeUnreachable(describe_failure(address, error)) from None
    refused: list[str] = []

    # A signal ends a DEBUG SLEEP early (nanosleep returns), and SIGTERM is what the kubelet sends a
    # force-deleted pod: the woken Redis would answer the preStop, which would then hand over. The sleep
    # is therefore sent as slices pipelined in one write: Redis runs one client's pipelined commands
    # back to back, so a signal cuts one slice short and the next slice freezes it again.
    slices = max(1, math.ceil(seconds / SLICE_SECONDS))

    def sleep() -> None:
        try:
            pipe = sleeper.pipeline(transaction=False)
            for _ in range(slices):
                pipe.execute_command("DEBUG", "SLEEP", f"{seconds / slices:.3f}")
            replies = pipe.execute(raise_on_error=False)
            refused.extend(str(r) for r in replies[:1] if isinstance(r, redis.ResponseError))
        except redis.ResponseError as error:
            refused.append(str(error))
        except redis.RedisError:
            pass  # the node was killed while frozen (a crash drill): that is the point
        finally:
            with contextlib.suppress(redis.RedisError):
                sleeper.close()

    thread = threading.Thread(target=sleep, daemon=True, name=f"freeze-{address}")
    thread.start()
    deadline = time.monotonic() + confirm
    try:
        while time.monotonic() < deadline:
            if refused:
                raise FaultNotInjected(
                    f"{address} refused DEBUG SLEEP ({refused[0][:120]}): freezing a node needs "
                    "`enable-debug-command local` in its redis.conf"
                )
            connection = probe.connection
            assert connection is not None  # a single-connection client
            connection.send_command("PING")
            if not connection.can_read(timeout=0.5):
                return thread  # a warm connection got no answer within 0.5 s: frozen
            connection.read_response()
            time.sleep(0.05)
    except redis.RedisError as error:
        raise NodeUnreachable(describe_failure(address, error)) from None
    finally:
        with contextlib.suppress(redis.RedisError):
            probe.close()
    raise FaultNotInjected(f"{address} still answered {confirm:g} s after DEBUG SLEEP: not frozen")


def shutdown_now(connector: Connector, address: NodeAddress) -> None:
    """The process exits at once: no save, no handover (SHUTDOWN NOSAVE NOW)."""
    # The node closes the connection while exiting: that is the point.
    with contextlib.suppress(redis.ConnectionError):
        connector.client(address).execute_command("SHUTDOWN", "NOSAVE", "NOW")


class CommandFaults:
    """Faults by Redis commands alone (--nodes): something else (systemd, a supervisor) restarts Redis."""

    def __init__(self, connector: Connector, handover_timeout: float = 25.0) -> None:
        self.connector = connector
        self.handover_timeout = handover_timeout

    def inject(self, target: Member, mode: Mode) -> None:
        address = target.address
        if mode == "hang":
            freeze(self.connector, address, hang_seconds(self.connector, address))
        elif mode in ("restart", "crash"):
            shutdown_now(self.connector, address)
        elif mode == "graceful":
            hand_over(self.connector, address, self.handover_timeout)
            with contextlib.suppress(redis.ConnectionError):
                self.connector.client(address).shutdown()
        else:
            raise ValueError(f"unknown fault mode {mode!r}")


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
        bounded = connector.with_timeout(left)
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
