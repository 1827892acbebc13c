"""`verify`: is the cluster healthy and complete? Every check with its verdict and the evidence.

Redis-level: reachability, the cluster checks of health.py, a write/read round trip on every
master, and the engine (Redis or Valkey, and version) of every node: nodes on different engines or versions
are a warning (a migration between engines under way), never a failure. Kubernetes facts (pods Ready,
restarts, data on a persistent volume) arrive as extra checks computed by the caller, so this module never
talks to Kubernetes.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import redis
from redis.crc import key_slot

from .clusterview import NodeView, format_ranges
from .engine import ServerInfo, mixed, read_server_info
from .errors import NodeUnreachable
from .health import Check, Expectation, absent_members, agreed_view, assess, reachability
from .node_timeout import prevailing, read_node_timeout
from .nodes import Connector, NodeAddress, parallel, read_view
from .posture import security_checks

T = TypeVar("T")


@dataclass
class VerifyReport:
    checks: list[Check]
    nodes: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    engines: dict[str, ServerInfo] = field(default_factory=dict)  # node name -> its engine

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "checks": [c.as_dict() for c in self.checks],
            "nodes": self.nodes,
            "engines": {
                name: {"family": info.family, "version": info.version_text}
                for name, info in sorted(self.engines.items())
            },
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
    views: list[NodeView],
    names: dict[str, str],
    k8s_nodes: dict[str, str],
    engines: dict[str, ServerInfo] | None = None,
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
                "engine": str(engines[view.address]) if engines and view.address in engines else "",
            }
        )
    return rows


def _read_each(read: Callable[[NodeAddress], T], addresses: list[NodeAddress]) -> dict[str, T | str]:
    """address -> what `read` returned for it, or why it could not be read (verify never raises for a
    node)."""

    def attempt(address: NodeAddress) -> T | str:
        try:
            return read(address)
        except (NodeUnreachable, ValueError, redis.RedisError) as error:
            return str(error)

    return {str(a): found for a, found in zip(addresses, parallel(attempt, addresses), strict=True)}


def read_engines(connector: Connector, addresses: list[NodeAddress]) -> dict[str, ServerInfo | str]:
    """address -> its engine (INFO server), or why it could not be read."""
    return _read_each(lambda address: read_server_info(connector, address), addresses)


def node_timeout_check(
    connector: Connector, addresses: list[NodeAddress], expected: int | None, names: dict[str, str]
) -> Check:
    """Every node's cluster-node-timeout is the configured one (or, when that is not known, the same on
    every node): a formation killed before it put the value back leaves nodes at its short one
    (helm_redis.node_timeout), which would make failovers false alarms under load."""

    found = _read_each(lambda address: read_node_timeout(connector, address), addresses)
    read = {a: ms for a, ms in found.items() if isinstance(ms, int)}
    wanted = expected if expected is not None else prevailing(read.values())
    wrong = [f"{names.get(a, a)} has {ms} ms" for a, ms in read.items() if ms != wanted]
    wrong += [f"{names.get(a, a)}: not read ({why})" for a, why in found.items() if isinstance(why, str)]
    if wrong:
        fix = "run the hook again (helm upgrade) or CONFIG SET cluster-node-timeout on them"
        return Check(
            "node-timeout", "fail", f"cluster-node-timeout should be {wanted} ms: {'; '.join(wrong)} ({fix})"
        )
    return Check("node-timeout", "pass", f"cluster-node-timeout {wanted} ms on all {len(read)} nodes")


def engine_check(engines: dict[str, ServerInfo | str], names: dict[str, str]) -> Check:
    """Every node's engine; nodes on different engines or versions warn (a migration between engines,
    which a rolling upgrade of the image passes through), an engine not read warns too."""
    read = {a: e for a, e in engines.items() if isinstance(e, ServerInfo)}
    unknown = [f"{names.get(a, a)}: {e}" for a, e in engines.items() if not isinstance(e, ServerInfo)]
    by_engine: dict[ServerInfo, list[str]] = {}
    for address, info in sorted(read.items(), key=lambda item: names.get(item[0], item[0])):
        by_engine.setdefault(ServerInfo(info.family, info.version), []).append(names.get(address, address))
    if unknown:
        return Check("engine", "warn", "engine not read on " + "; ".join(unknown))
    if mixed(read.values()):
        groups = "; ".join(f"{info}: {', '.join(nodes)}" for info, nodes in sorted(by_engine.items()))
        return Check("engine", "warn", f"nodes run different engines or versions (a migration?): {groups}")
    return Check("engine", "pass", f"all {len(read)} nodes run " + ", ".join(str(e) for e in by_engine))


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
    failures = [r for r in results if isinstance(r, str)]
    if not views:  # nothing to judge: a connection or password problem, not an unhealthy cluster
        raise NodeUnreachable(
            f"no node answered: {failures[0]}"
            + (f" (and {len(failures) - 1} more)" if len(failures) > 1 else "")
        )
    # address -> why it did not answer (without the address that NodeUnreachable starts with)
    unreachable = {
        str(a): r.removeprefix(f"{a}: ")
        for a, r in zip(addresses, results, strict=True)
        if isinstance(r, str)
    }
    # The cause first: which nodes are down, and what they were; the other checks then judge the
    # cluster as the nodes that answer see it, counting the silent ones as members that are down.
    checks = list(extra_checks or [])
    checks.append(reachability(views, unreachable, names))
    checks += assess(views, expected or Expectation(), k8s_nodes, names, unreachable=unreachable)
    if not read_only:
        checks.append(_round_trips(connector, views, addresses, names, unreachable))
    answered = [a for a in addresses if str(a) not in unreachable]
    checks += security_checks(connector, answered, names)
    checks.append(node_timeout_check(connector, answered, (expected or Expectation()).node_timeout, names))
    engines = read_engines(connector, answered)
    checks.append(engine_check(engines, names))
    known = {a: e for a, e in engines.items() if isinstance(e, ServerInfo)}
    rows = node_rows(views, names, k8s_nodes or {}, known)
    rows += _silent_rows(views, unreachable, names, k8s_nodes or {})
    report_engines = {names.get(a, a): e for a, e in known.items()}
    return VerifyReport(checks, rows, time.monotonic() - started, report_engines)


def _silent_rows(
    views: list[NodeView], unreachable: dict[str, str], names: dict[str, str], k8s_nodes: dict[str, str]
) -> list[dict[str, str]]:
    """Table rows for the nodes that did not answer, with what the others remember of them."""
    gone = absent_members(views, unreachable, names)
    reference = agreed_view(views)
    known = reference.by_id() if reference else {}
    label = {v.node_id: names.get(v.address, v.address) for v in views} | gone
    by_name = {name: node_id for node_id, name in gone.items()}
    rows = []
    for address in unreachable:
        name = names.get(address, address)
        node = known.get(by_name.get(name, ""))
        rows.append(
            {
                "node": name,
                "address": node.address if node else address,
                "id": node.node_id[:8] if node else "",
                "role": "does not answer",
                "of": label.get(node.master_id or "", "") if node and node.is_replica else "",
                "slots": format_ranges(node.slots) if node and node.slots else "",
                "k8s node": k8s_nodes.get(address, ""),
                "link": "",
                "engine": "",
            }
        )
    return rows


def _round_trips(
    connector: Connector,
    views: list[NodeView],
    addresses: list[NodeAddress],
    names: dict[str, str],
    unreachable: dict[str, str] | None = None,
) -> Check:
    by_address = {str(a): a for a in addresses}
    masters = [v for v in views if v.myself.is_master and v.myself.slots]
    problems = parallel(lambda v: round_trip(connector, v, by_address[v.address]), masters)
    failures = [
        f"{names.get(v.address, v.address)}: {p}"
        for v, p in zip(masters, problems, strict=True)
        if p is not None
    ]
    # A master that does not answer takes no writes for its slots: no round trip was possible there.
    reference = agreed_view(views)
    gone = absent_members(views, unreachable or {}, names)
    failures += [
        f"{gone[owner]} does not answer: its slots {format_ranges(ranges)} take no writes"
        for owner, ranges in (reference.slot_map() if reference else {}).items()
        if owner in gone
    ]
    if failures:
        return Check("write-read", "fail", "; ".join(failures))
    return Check("write-read", "pass", f"SET/GET/DEL round trip on all {len(masters)} masters")
