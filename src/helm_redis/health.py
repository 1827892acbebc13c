"""Is the cluster whole? Checks computed from every node's own view (shared by init's "done" and verify)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Literal

from .clusterview import TOTAL_SLOTS, ClusterNode, NodeView, covered_slots, format_ranges
from .nodes import NodeAddress
from .plan import Member, assign_roles

Status = Literal["pass", "warn", "fail"]

# The checks that formation waits for before it calls the cluster formed.
DONE_CHECKS = (
    "cluster-state",
    "membership",
    "slot-map-agreement",
    "slot-coverage",
    "open-slots",
    "role-agreement",
    "replica-count",
    "replica-links",
)


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str

    @property
    def ok(self) -> bool:
        return self.status != "fail"

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class Expectation:
    """The shape the cluster should have (from the release's values or the command line)."""

    masters: int | None = None
    replicas_per_master: int | None = None
    # the configured cluster-node-timeout, ms (the chart's cluster.nodeTimeout)
    node_timeout: int | None = None


def _check(name: str, failures: list[str], passed: str, warn: bool = False) -> Check:
    if not failures:
        return Check(name, "pass", passed)
    shown = "; ".join(failures[:5]) + (f"; and {len(failures) - 5} more" if len(failures) > 5 else "")
    return Check(name, "warn" if warn else "fail", shown)


def roles(views: list[NodeView]) -> tuple[dict[str, NodeView], dict[str, str]]:
    """Each node's role as it states it itself: (masters owning slots by id, replica id -> master id)."""
    masters = {v.node_id: v for v in views if v.myself.is_master and v.myself.slots}
    replicas = {v.node_id: v.myself.master_id for v in views if v.myself.is_replica and v.myself.master_id}
    return masters, replicas


def name_of(views: list[NodeView], names: dict[str, str] | None = None) -> dict[str, str]:
    """node id -> a readable name (pod name when known, else the address)."""
    names = names or {}
    return {v.node_id: names.get(v.address, v.address) for v in views}


def _addresses(node: ClusterNode) -> Iterator[str]:
    """How a node may have been named to us: its announced ip:port, its hostname, its pod name."""
    yield node.address
    if node.hostname:
        yield f"{node.hostname}:{node.port}"
        yield f"{node.hostname.split('.')[0]}:{node.port}"


def absent_members(
    views: list[NodeView], unreachable: Collection[str], names: dict[str, str] | None = None
) -> dict[str, str]:
    """node id -> name of each node that did not answer (`unreachable`: addresses as we dialled them),
    as the nodes that did answer know it: a member of the cluster, only down."""
    names = names or {}
    wanted = set(unreachable)
    found: dict[str, str] = {}
    for view in views:
        for node in view.nodes:
            if node.node_id in found or node.is_myself:
                continue
            address = next((a for a in _addresses(node) if a in wanted), None)
            if address is not None:
                found[node.node_id] = names.get(address, address)
    return found


def agreed_view(views: list[NodeView]) -> NodeView | None:
    """A view with the slot map most nodes agree on (None without views)."""
    signatures = Counter(v.signature() for v in views)
    if not signatures:
        return None
    agreed, _ = signatures.most_common(1)[0]
    return next(v for v in views if v.signature() == agreed)


def _role(node: ClusterNode | None, label: Mapping[str, str]) -> str:
    if node is None:
        return ""
    if node.is_replica and node.master_id:
        return f"replica of {label.get(node.master_id, node.master_id[:8])}"
    if node.slots:
        return f"master of slots {format_ranges(node.slots)}"
    return "master without slots"


def reachability(
    views: list[NodeView], unreachable: Mapping[str, str], names: dict[str, str] | None = None
) -> Check:
    """`nodes-reachable`: which nodes do not answer (address -> why), each with the role the nodes that
    answer remember for it, and the shards of which no node answers at all."""
    if not unreachable:
        return Check("nodes-reachable", "pass", f"all {len(views)} nodes answer")
    names = names or {}
    gone = absent_members(views, unreachable, names)
    label = {**gone, **name_of(views, names)}
    reference = agreed_view(views)
    known = reference.by_id() if reference else {}
    role_by_name = {name: _role(known.get(node_id), label) for node_id, name in gone.items()}
    parts = []
    for address, why in unreachable.items():
        name = names.get(address, address)
        role = role_by_name.get(name)
        parts.append(f"{name}{f' ({role})' if role else ''}: {why}")
    dark = [
        node
        for node in known.values()
        if node.node_id in gone
        and node.slots
        and all(r.node_id in gone for r in known.values() if r.master_id == node.node_id)
    ]
    shards = "".join(f"; no node of the shard serving slots {format_ranges(n.slots)} answers" for n in dark)
    total = len(views) + len(unreachable)
    return Check(
        "nodes-reachable",
        "fail",
        f"{len(unreachable)} of {total} nodes do not answer: " + "; ".join(parts) + shards,
    )


def assess(
    views: list[NodeView],
    expected: Expectation | None = None,
    k8s_nodes: dict[str, str] | None = None,
    names: dict[str, str] | None = None,
    max_lag_bytes: int = 1 << 20,
    unreachable: Collection[str] = (),
) -> list[Check]:
    """Every cluster-level check, each with its verdict and evidence.

    `k8s_nodes` maps a view's address to the Kubernetes node it runs on; `names` maps it to a pod name.
    `unreachable` lists the addresses of members that did not answer: the nodes that answer still know
    them, so they are judged as members that are down, never as nodes outside the cluster.
    """
    expected = expected or Expectation()
    label = name_of(views, names)
    ids = set(label)
    gone = absent_members(views, unreachable, names)
    label_any = {**gone, **label}
    answering = " that answer" if unreachable else ""  # the silent ones are judged by nodes-reachable
    checks: list[Check] = []

    checks.append(
        _check(
            "cluster-state",
            [
                f"{label[v.node_id]} reports cluster_state:{v.cluster_info.get('cluster_state')}"
                for v in views
                if not v.state_ok
            ],
            f"cluster_state:ok on all {len(views)} nodes{answering}",
        )
    )

    membership: list[str] = []
    for view in views:
        known = view.by_id()
        missing = (ids | set(gone)) - set(known)
        strangers = [known[i] for i in sorted(set(known) - ids - set(gone))]
        unsettled = [n for n in view.nodes if n.node_id in ids and not n.is_settled]
        if missing:
            membership.append(
                f"{label[view.node_id]} does not know {', '.join(sorted(label_any[i] for i in missing))}"
            )
        if strangers:
            membership.append(
                f"{label[view.node_id]} knows {len(strangers)} node(s) that are none of the nodes checked "
                "(departed nodes: the reconciler or the next `helm upgrade` forgets them once they are gone; "
                "or `helm-redis init`): "
                + ", ".join(
                    f"{n.node_id[:8]} at {n.address} ({','.join(sorted(n.flags))})" for n in strangers
                )
            )
        for node in unsettled:
            flags = ",".join(sorted(node.flags - {"myself", "master", "slave"}))
            membership.append(
                f"{label[view.node_id]} sees {label.get(node.node_id, node.node_id)} as {flags}"
            )
    checks.append(_check("membership", membership, f"all {len(views)} nodes{answering} know each other"))

    reference = agreed_view(views)
    agreed_signature = reference.signature() if reference else ""
    checks.append(
        _check(
            "slot-map-agreement",
            [
                f"{label[v.node_id]} has a different slot map"
                for v in views
                if v.signature() != agreed_signature
            ],
            f"every node{' that answers' if unreachable else ''} has the same slot map",
        )
    )

    # Slot owners as the nodes agree on them: a master that is down still owns its slots until a
    # replica takes them over; those slots are assigned, not served.
    slot_map = reference.slot_map() if reference else {}
    owners = reference.by_id() if reference else {}
    covered = covered_slots(slot_map)
    coverage: list[str] = []
    if covered != TOTAL_SLOTS:
        coverage.append(f"{covered} of {TOTAL_SLOTS} slots are assigned to a master")
    down = {
        owner: "does not answer" if owner in gone else "is flagged failed"
        for owner in slot_map
        if owner not in ids and (owner in gone or owners[owner].is_failing)
    }
    for owner, why in down.items():
        slots = covered_slots({owner: slot_map[owner]})
        coverage.append(
            f"{slots} slots ({format_ranges(slot_map[owner])}) belong to "
            f"{label_any.get(owner, owners[owner].address)}, which {why}"
        )
    checks.append(_check("slot-coverage", coverage, f"{TOTAL_SLOTS} slots served by {len(slot_map)} masters"))

    checks.append(
        _check(
            "open-slots",
            [
                f"{label[v.node_id]}: slot {slot} {what}"
                for v in views
                for slot, what in v.open_slots().items()
            ],
            "no slot is migrating or importing",
        )
    )

    masters, replicas = roles(views)
    disagreements: list[str] = []
    for view in views:
        for node in view.nodes:
            if node.node_id not in ids or node.is_myself:
                continue
            says_replica = node.is_replica
            truly_replica = node.node_id in replicas
            if says_replica != truly_replica or (truly_replica and node.master_id != replicas[node.node_id]):
                disagreements.append(
                    f"{label[view.node_id]} sees {label[node.node_id]} as "
                    f"{'replica' if says_replica else 'master'}"
                )
    checks.append(_check("role-agreement", disagreements, "every node agrees on every role"))

    # Masters are counted as the agreed slot map has them (as slot-coverage does): a master that is down
    # is still one of them; its replicas are not counted here (nodes-reachable says they are down).
    replica_counts = Counter(replicas.values())
    count_failures: list[str] = []
    owner_count = len(slot_map) if reference else len(masters)
    if expected.masters is not None and owner_count != expected.masters:
        count_failures.append(f"{owner_count} masters own slots, {expected.masters} expected")
    for master_id in masters:
        have = replica_counts.get(master_id, 0)
        if expected.replicas_per_master is not None and have < expected.replicas_per_master:
            count_failures.append(
                f"{label[master_id]} has {have} replica(s), {expected.replicas_per_master} expected"
            )
    counted = [f"{label[m]}:{replica_counts.get(m, 0)}" for m in sorted(masters, key=label.get)]
    unjudged = [f"{label_any.get(m, owners[m].address)}: {why}" for m, why in down.items()]
    checks.append(
        _check("replica-count", count_failures, f"replicas per master: {', '.join(counted + unjudged)}")
    )

    by_id = {v.node_id: v for v in views}
    link_failures: list[str] = []
    lags: list[int] = []
    for replica_id, master_id in replicas.items():
        status = by_id[replica_id].replication.get("master_link_status")
        if status != "up":
            link_failures.append(f"{label[replica_id]}: master_link_status:{status}")
            continue
        master_view = by_id.get(master_id)
        if master_view is None:
            link_failures.append(
                f"{label[replica_id]} replicates {gone[master_id]}, which does not answer"
                if master_id in gone
                else f"{label[replica_id]} replicates {master_id[:8]}, which is not among the nodes checked"
            )
            continue
        offset = int(by_id[replica_id].replication.get("slave_repl_offset", 0) or 0)
        lag = int(master_view.replication.get("master_repl_offset", 0) or 0) - offset
        lags.append(lag)
        if lag > max_lag_bytes:
            link_failures.append(f"{label[replica_id]} is {lag} bytes behind its master")
    worst = max(lags, default=0)
    checks.append(
        _check("replica-links", link_failures, f"{len(replicas)} replica links up, max lag {worst} bytes")
    )

    if k8s_nodes is not None:
        checks.append(_topology_check(views, masters, replicas, k8s_nodes, label))

    checks.append(
        _check(
            "appendonly",
            [f"{label[v.node_id]} has appendonly no" for v in views if not v.appendonly],
            "appendonly yes on every node",
        )
    )
    return checks


def _topology_check(
    views: list[NodeView],
    masters: dict[str, NodeView],
    replicas: dict[str, str],
    k8s_nodes: dict[str, str],
    label: dict[str, str],
) -> Check:
    node_of = {v.node_id: k8s_nodes.get(v.address) for v in views}
    shared = [
        f"{label[r]} and its master {label[m]} both run on {node_of[r]}"
        for r, m in replicas.items()
        if node_of.get(r) and node_of.get(r) == node_of.get(m)
    ]
    if not shared:
        return Check("replica-placement", "pass", "no replica shares a Kubernetes node with its master")
    distinct = len({n for n in node_of.values() if n})
    # With one k8s node, or fewer than two distinct nodes per shard, colocation cannot be avoided.
    possible = distinct >= 2 and _avoidable(views, masters, replicas, node_of)
    return _check("replica-placement", shared, "", warn=not possible)


def _avoidable(
    views: list[NodeView],
    masters: dict[str, NodeView],
    replicas: dict[str, str],
    node_of: dict[str, str | None],
) -> bool:
    """Could another pairing of these nodes keep every replica off its master's k8s node?"""
    members = {
        v.node_id: Member(NodeAddress(v.address, 0), v.address, node_of.get(v.node_id), index)
        for index, v in enumerate(sorted(views, key=lambda v: v.address))
    }
    per_master = max(Counter(replicas.values()).values(), default=0)
    assignment = assign_roles([], {}, list(members.values()), len(masters), per_master)
    return not any(r.k8s_node and r.k8s_node == m.k8s_node for r, m in assignment.replicas)


def failed(checks: list[Check], names: tuple[str, ...] | None = None) -> list[Check]:
    return [c for c in checks if not c.ok and (names is None or c.name in names)]
