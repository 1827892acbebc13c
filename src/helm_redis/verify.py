"""`verify`: is the cluster healthy and complete? Every check with its verdict and the evidence.

Redis-level: reachability, the cluster checks of health.py, and a write/read round trip on every
master. Kubernetes facts (pods Ready, restarts, data on a persistent volume) arrive as extra checks
computed by the caller, so this module never talks to Kubernetes.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

import redis
from redis.crc import key_slot

from .clusterview import NodeView, format_ranges
from .errors import NodeUnreachable
from .health import Check, Expectation, assess
from .nodes import Connector, NodeAddress, parallel, read_view


@dataclass
class VerifyReport:
    checks: list[Check]
    nodes: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "checks": [c.as_dict() for c in self.checks],
            "nodes": self.nodes,
        }


def key_for_slots(ranges: tuple[tuple[int, int], ...], prefix: str) -> str:
    """A key (with a hash tag) whose slot falls in `ranges`: found by counting up, bounded."""
    for tag in range(200_000):
        key = f"{prefix}{{{tag}}}"
        slot = key_slot(key.encode())
        if any(start <= slot <= end for start, end in ranges):
            return key
    raise ValueError(f"no key found for slots {format_ranges(ranges)}")


def round_trip(connector: Connector, view: NodeView, address: NodeAddress) -> str | None:
    """SET, GET and DEL a throw-away key on this master; None when fine, else what went wrong."""
    key = key_for_slots(view.myself.slots, "helm-redis:verify:")
    value = uuid.uuid4().hex
    try:
        client = connector.client(address)
        client.set(key, value, px=60_000)
        found = client.get(key)
        client.delete(key)
    except redis.RedisError as error:
        return f"{error}"
    return None if found == value else f"read back {found!r} instead of what was written"


def node_rows(
    views: list[NodeView], names: dict[str, str], k8s_nodes: dict[str, str]
) -> list[dict[str, str]]:
    label = {v.node_id: names.get(v.address, v.address) for v in views}
    rows = []
    for view in sorted(views, key=lambda v: names.get(v.address, v.address)):
        me = view.myself
        rows.append(
            {
                "node": label[me.node_id],
                "address": f"{me.ip}:{me.port}",
                "id": me.node_id[:8],
                "role": "master" if me.is_master else "replica",
                "of": label.get(me.master_id or "", "") if me.is_replica else "",
                "slots": format_ranges(me.slots) if me.slots else "",
                "k8s node": k8s_nodes.get(view.address, ""),
                "link": str(view.replication.get("master_link_status", "")) if me.is_replica else "",
            }
        )
    return rows


def verify(
    connector: Connector,
    addresses: list[NodeAddress],
    expected: Expectation | None = None,
    names: dict[str, str] | None = None,
    k8s_nodes: dict[str, str] | None = None,
    read_only: bool = False,
    extra_checks: list[Check] | None = None,
) -> VerifyReport:
    """Read every node once (in parallel), run every check; never raises for an unhealthy cluster."""
    started = time.monotonic()
    names = names or {}

    def attempt(address: NodeAddress) -> NodeView | str:
        try:
            return read_view(connector, address)
        except NodeUnreachable as error:
            return str(error)

    results = parallel(attempt, addresses)
    views = [r for r in results if isinstance(r, NodeView)]
    unreachable = [r for r in results if isinstance(r, str)]
    if not views:  # nothing to judge: a connection or password problem, not an unhealthy cluster
        raise NodeUnreachable(
            f"no node answered: {unreachable[0]}"
            + (f" (and {len(unreachable) - 1} more)" if len(unreachable) > 1 else "")
        )
    checks = list(extra_checks or [])
    checks.append(
        Check("nodes-reachable", "fail", "; ".join(unreachable))
        if unreachable
        else Check("nodes-reachable", "pass", f"all {len(views)} nodes answer")
    )
    if views:
        checks += assess(views, expected or Expectation(), k8s_nodes, names)
        if not read_only:
            checks.append(_round_trips(connector, views, addresses, names))
    return VerifyReport(checks, node_rows(views, names, k8s_nodes or {}), time.monotonic() - started)


def _round_trips(
    connector: Connector, views: list[NodeView], addresses: list[NodeAddress], names: dict[str, str]
) -> Check:
    by_address = {str(a): a for a in addresses}
    masters = [v for v in views if v.myself.is_master and v.myself.slots]
    problems = parallel(lambda v: round_trip(connector, v, by_address[v.address]), masters)
    failures = [
        f"{names.get(v.address, v.address)}: {p}"
        for v, p in zip(masters, problems, strict=True)
        if p is not None
    ]
    if failures:
        return Check("write-read", "fail", "; ".join(failures))
    return Check("write-read", "pass", f"SET/GET/DEL round trip on all {len(masters)} masters")
