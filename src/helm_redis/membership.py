"""Departed nodes: which node IDs are gone for good, which members took their place, which shards lost
every copy, and forgetting departed IDs on every member.

A node ID is departed when some member still lists it but no member is it (every member answered).
It is *gone* when no member has a working link to it any more; only then is it forgotten. Redis bans a
forgotten ID for 60 s on the node that forgot it (`CLUSTER FORGET`), and a node that still knows the ID
gossips it back to the others once their ban ends: so every member forgets it in the same moment.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from .clusterstate import ClusterState
from .clusterview import ClusterNode, SlotRange, format_ranges
from .nodes import Connector, parallel
from .plan import Member


@dataclass(frozen=True)
class LostShard:
    """A master that is gone with every replica it had: nobody holds its slots' keys any more."""

    master: ClusterNode
    replicas: tuple[ClusterNode, ...]

    @property
    def slots(self) -> tuple[SlotRange, ...]:
        return self.master.slots

    def describe(self) -> str:
        pods = ", ".join(node_label(n) for n in (self.master, *self.replicas))
        return f"slots {format_ranges(self.slots)} (lost with {pods})"


def node_label(node: ClusterNode) -> str:
    """A departed node as people know it: its pod name (announced hostname), else its address."""
    name = node.hostname.split(".")[0] if node.hostname else node.address
    return f"{name} ({node.node_id[:8]})"


def successor_of(node: ClusterNode, members: list[Member]) -> Member | None:
    """The member that runs where a departed node ran: the same pod (hostname) or the same address."""
    for member in members:
        if node.hostname and node.hostname in (member.address.host, member.name):
            return member
        if node.hostname and node.hostname.split(".")[0] == member.name:
            return member
        if node.address == str(member.address):
            return member
    return None


def gone(state: ClusterState) -> dict[str, ClusterNode]:
    """Departed nodes that no member reaches any more: safe to forget, or to take over from."""
    return {i: n for i, n in state.departed().items() if not state.alive_somewhere(i)}


def strangers(state: ClusterState) -> dict[str, ClusterNode]:
    """Departed nodes some member still reaches: a pod still stopping, or a node of another cluster."""
    return {i: n for i, n in state.departed().items() if state.alive_somewhere(i)}


def awaiting_failover(state: ClusterState) -> dict[str, ClusterNode]:
    """Gone masters that still own slots while a member replicates them: Redis's own election will
    promote that replica (after the node timeout); nothing to do but wait."""
    followers = {v.myself.master_id for v in state.views.values() if v.myself.is_replica}
    return {i: n for i, n in gone(state).items() if n.slots and i in followers}


def stranded_masters(state: ClusterState) -> dict[str, ClusterNode]:
    """Gone masters that Redis will never fail over by itself: another node now answers at their address
    (a pod restarted on an empty volume with its old IP). The peers then flag the old ID `noaddr`, stop
    pinging it, and so never count it as failing. Its process is certainly dead: its replica may take
    over without it (CLUSTER FAILOVER FORCE)."""
    addresses = {str(m.address) for m in state.views} | {v.myself.address for v in state.views.values()}
    return {
        i: n
        for i, n in awaiting_failover(state).items()
        if n.address in addresses
        or any("noaddr" in (v.by_id().get(i) or n).flags for v in state.views.values())
    }


def best_replica(state: ClusterState, master_id: str) -> Member | None:
    """The member replicating `master_id` with the most data (highest replication offset)."""
    followers = [m for m, v in state.views.items() if v.myself.is_replica and v.myself.master_id == master_id]
    return max(
        followers,
        key=lambda m: int(state.views[m].replication.get("slave_repl_offset", 0) or 0),
        default=None,
    )


def lost_shards(state: ClusterState) -> list[LostShard]:
    """Gone masters that still own slots and that no member replicates: their keys exist nowhere."""
    departed = state.departed()
    followers = {v.myself.master_id for v in state.views.values() if v.myself.is_replica}
    lost = []
    for node_id, node in gone(state).items():
        if node.slots and node_id not in followers:
            replicas = tuple(n for n in departed.values() if n.master_id == node_id)
            lost.append(LostShard(node, replicas))
    return sorted(lost, key=lambda shard: shard.slots)


def lost_shards_text(state: ClusterState, lost: list[LostShard]) -> str:
    """The lost shards with their slots and pods, and the other gone nodes without a known shard (an old
    master whose demotion never reached the others shows up as a master without slots: it may have
    held a copy too, so it is named)."""
    named = {n.node_id for shard in lost for n in (shard.master, *shard.replicas)}
    members = {v.node_id for v in state.views.values()}
    others = [
        node_label(n)
        for i, n in gone(state).items()
        if i not in named and not n.slots and (n.master_id is None or n.master_id not in members)
    ]
    text = "; ".join(shard.describe() for shard in lost)
    return text + (f"; also gone: {', '.join(others)}" if others else "")


def forget(connector: Connector, state: ClusterState, node_ids: list[str]) -> None:
    """CLUSTER FORGET every ID on every member that lists it, all members at once (the 60 s ban)."""
    by_member = {m: [i for i in node_ids if i in v.by_id()] for m, v in state.views.items()}

    def forget_on(item: tuple[Member, list[str]]) -> None:
        member, ids = item
        pipe = connector.client(member.address).pipeline(transaction=False)
        for node_id in ids:
            pipe.execute_command("CLUSTER", "FORGET", node_id)
        for result in pipe.execute(raise_on_error=False):
            # Forgotten already (by a run before this one, or the reconciler at the same time).
            if isinstance(result, redis.ResponseError) and "Unknown node" not in str(result):
                raise result

    parallel(forget_on, [(m, ids) for m, ids in by_member.items() if ids])
