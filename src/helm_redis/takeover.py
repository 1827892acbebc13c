"""Promote a dead master's replica at once with `CLUSTER FAILOVER FORCE`, when something outside Redis
knows the master's process is gone (its container exited: issue 16's controller), instead of waiting for
cluster-node-timeout, the failure reports and the election. Redis level: the caller has decided that the
master is gone; this module decides whether acting is safe and which replica takes over.

Why this cannot give one slot range two masters: FORCE only skips the handshake with the (dead) old master;
the replica still asks the masters for their votes and is promoted only with a majority of them
(`clusterHandleReplicaFailover`: failover_auth_count >= needed_quorum; TAKEOVER would skip the vote, and is
never used here). A minority partition therefore cannot promote anyone, and a majority grants one vote per
epoch per master, so two replicas cannot both win the same epoch. On top of that, nothing is done when the
old master still answers, when fewer than a majority of the slot-serving masters answer us, or when the
shard has no replica that answers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis

from .clusterview import NodeView
from .errors import NodeRefused, NodeUnreachable
from .nodes import Connector, NodeAddress, ping, try_read_views


@dataclass(frozen=True)
class TakeoverPlan:
    replica: NodeAddress | None  # who is asked to take over; None: nothing is done
    reason: str


@dataclass(frozen=True)
class TakeoverResult:
    promoted: NodeAddress | None
    reason: str
    seconds: float
    dead_answers: bool = False  # nothing done because the old master still answers


def plan_takeover(views: dict[NodeAddress, NodeView], dead_id: str, dead_answers: bool) -> TakeoverPlan:
    """Which replica of master `dead_id` should take over now, from the views of the nodes that answered."""
    if dead_answers:
        return TakeoverPlan(None, f"{dead_id[:8]} still answers: Redis's own failure detection decides")
    # Every answering node must still see it as a master serving slots: right after a handover some may
    # not have heard of it yet, and then there is nothing to take over.
    seen = [n for v in views.values() for n in v.nodes if n.node_id == dead_id]
    if not seen or any(not n.is_master or not n.slots for n in seen):
        return TakeoverPlan(None, f"{dead_id[:8]} is no master serving slots: nothing to take over")
    masters = {n.node_id for v in views.values() for n in v.nodes if n.is_master and n.slots}
    answering = {v.node_id for v in views.values() if v.myself.is_master and v.myself.slots} - {dead_id}
    quorum = len(masters) // 2 + 1
    if len(answering) < quorum:
        return TakeoverPlan(
            None,
            f"only {len(answering)} of {len(masters)} masters answer: no majority to vote ({quorum} needed)",
        )
    replicas = [(address, v) for address, v in views.items() if v.myself.master_id == dead_id]
    if not replicas:
        return TakeoverPlan(None, f"no replica of {dead_id[:8]} answers")
    # The most up-to-date copy of the shard: the highest replication offset it has processed.
    address, _ = max(replicas, key=lambda item: (_offset(item[1]), str(item[0])))
    return TakeoverPlan(address, f"{address} has the highest replication offset of {dead_id[:8]}'s replicas")


def _offset(view: NodeView) -> int:
    try:
        return int(view.replication.get("slave_repl_offset", view.replication.get("master_repl_offset", 0)))
    except ValueError:
        return 0


def node_id_at(views: dict[NodeAddress, NodeView], address: NodeAddress) -> str | None:
    """The ID the answering nodes know at `address` (announced IP and port), or None."""
    for view in views.values():
        for node in view.nodes:
            if node.ip == address.host and node.port == address.port and not node.is_myself:
                return node.node_id
    return None


def take_over(
    connector: Connector,
    addresses: list[NodeAddress],
    dead: NodeAddress,
    dead_id: str | None,
    timeout: float = 10.0,
    probe_timeout: float = 0.3,
) -> TakeoverResult:
    """Plan (above) and, when safe, `CLUSTER FAILOVER FORCE` on the chosen replica; returns once it reports
    itself master (or the deadline passes). Without `dead_id`, the ID the other nodes know at `dead`."""
    started = time.monotonic()
    others = [a for a in addresses if a != dead]
    read = try_read_views(connector, others)
    views = {a: v for a, v in zip(others, read, strict=True) if isinstance(v, NodeView)}
    dead_id = dead_id or node_id_at(views, dead)
    if dead_id is None:
        return TakeoverResult(None, f"no answering node knows a node at {dead}", time.monotonic() - started)
    # A live Redis answers PING within milliseconds even under load; a frozen one never does, and every
    # moment spent waiting on it is the shard's outage.
    probe = connector.with_timeout(probe_timeout)
    try:
        ping(probe, dead)
        dead_answers = True
    except NodeRefused:
        dead_answers = True  # it answered, with an error (a password it refuses): alive
    except NodeUnreachable:
        dead_answers = False  # no connection, no answer in time, or loading its data
    finally:
        probe.close()
    plan = plan_takeover(views, dead_id, dead_answers)
    if plan.replica is None:
        return TakeoverResult(None, plan.reason, time.monotonic() - started, dead_answers)
    client = connector.client(plan.replica)
    try:
        client.execute_command("CLUSTER", "FAILOVER", "FORCE")
    except redis.RedisError as error:
        return TakeoverResult(
            None, f"{plan.replica} refused CLUSTER FAILOVER FORCE: {error}", time.monotonic() - started
        )
    deadline = started + timeout
    while time.monotonic() < deadline:
        try:
            if client.execute_command("ROLE")[0] == "master":
                return TakeoverResult(plan.replica, plan.reason, time.monotonic() - started)
        except redis.RedisError:
            pass
        time.sleep(0.02)
    return TakeoverResult(
        None, f"{plan.replica} not promoted within {timeout:g} s", time.monotonic() - started
    )
