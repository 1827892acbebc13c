"""The pods' start step: point `nodes.conf` at the peers' current IPs before redis-server starts.

The cluster bus dials the IPs stored in `nodes.conf`, never hostnames. After every pod restarts at once
(all IPs new), no node could reach any other. Each line also stores the peer's announced hostname
(`ip:port@cport,hostname`, Redis >= 7.0): resolving it again gives the new IP.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from .clusterview import ClusterNode, parse_cluster_nodes, parse_node_line
from .nodes import Connector, NodeAddress

Resolver = Callable[[str], str | None]


def dns_resolver(hostname: str) -> str | None:
    """The first address of `hostname`, or None while it does not resolve (the pod has no IP yet)."""
    try:
        return socket.getaddrinfo(hostname, None, proto=socket.IPPROTO_TCP)[0][4][0]
    except (socket.gaierror, UnicodeError):
        return None


@dataclass
class Rewrite:
    text: str
    changed: dict[str, tuple[str, str]] = field(default_factory=dict)  # hostname -> (old ip, new ip)
    unresolved: list[str] = field(default_factory=list)


def rewrite_addresses(text: str, resolve: Resolver) -> Rewrite:
    """Replace each node's IP by what its hostname resolves to now; lines without hostname stay."""
    out: list[str] = []
    result = Rewrite(text="")
    for line in text.splitlines(keepends=True):
        if not line.strip() or line.startswith("vars "):
            out.append(line)
            continue
        node = parse_node_line(line)
        if not node.hostname:
            out.append(line)
            continue
        new_ip = resolve(node.hostname)
        if new_ip is None:
            result.unresolved.append(node.hostname)
            out.append(line)
            continue
        if new_ip != node.ip:
            node_id, address, rest = line.split(" ", 2)
            out.append(f"{node_id} {new_ip}{address[len(node.ip) :]} {rest}")
            result.changed[node.hostname] = (node.ip, new_ip)
        else:
            out.append(line)
    result.text = "".join(out)
    return result


def prepare_nodes_conf(
    path: Path,
    timeout: float,
    resolve: Resolver = dns_resolver,
    progress: Callable[[str], None] = print,
    interval: float = 1.0,
) -> Rewrite | None:
    """Rewrite stale IPs in `path`, waiting (bounded) for peers whose names do not resolve yet.

    Never blocks the start for good: at the deadline it writes what it could resolve and returns.
    Returns None for a fresh node (no nodes.conf yet).
    """
    if not path.exists():
        progress(f"{path} does not exist yet: a fresh node, nothing to prepare")
        return None
    original = path.read_text()
    deadline = time.monotonic() + timeout
    while True:
        rewrite = rewrite_addresses(original, resolve)
        if not rewrite.unresolved or time.monotonic() >= deadline:
            break
        progress(
            f"waiting for {len(rewrite.unresolved)} peer name(s) to resolve: {', '.join(rewrite.unresolved)}"
        )
        time.sleep(interval)
    if rewrite.unresolved:
        progress(
            f"still unresolved after {timeout:.0f} s, kept their old IPs: {', '.join(rewrite.unresolved)}"
        )
    for hostname, (old, new) in rewrite.changed.items():
        progress(f"{hostname}: {old or '(none)'} -> {new}")
    if rewrite.changed:
        temporary = path.with_suffix(".prepare")
        temporary.write_text(rewrite.text)
        os.replace(temporary, path)
    else:
        progress("every peer address is current")
    return rewrite


def await_takeover(
    text: str,
    connector: Connector,
    timeout: float,
    progress: Callable[[str], None] = print,
    interval: float = 0.25,
) -> str:
    """A master restarting while its replicas live waits (bounded) until one of them has taken over.

    Without this, a master that comes back within the node timeout simply resumes, and whether a
    replica takes over depends on how fast the pod was recreated. Waiting makes the outcome certain
    (the old master rejoins as a replica, as with any failover) and never lets a master that lost its
    data come back and have its replicas resync from it. It waits only when a failover can happen:
    a replica answers and a majority of the masters does.
    """
    nodes = parse_cluster_nodes(text)
    me = next((n for n in nodes if n.is_myself), None)
    if me is None or not me.is_master or not me.slots:
        return "not a master serving slots: nothing to wait for"
    replicas = [n for n in nodes if n.master_id == me.node_id]
    masters = [n for n in nodes if n.is_master and n.slots]
    live_replicas = [n for n in replicas if _answers(connector, n)]
    live_masters = [n for n in masters if n.node_id != me.node_id and _answers(connector, n)]
    if not live_replicas or len(live_masters) < len(masters) // 2 + 1:
        return "no failover possible now (replicas or a majority of masters down): starting as is"
    first_slot = me.slots[0][0]
    deadline = time.monotonic() + timeout
    progress(f"restarting master: waiting up to {timeout:.0f} s for a replica to take over")
    while time.monotonic() < deadline:
        for peer in live_replicas + live_masters:
            try:
                view = parse_cluster_nodes(
                    connector.client(NodeAddress(peer.ip, peer.port)).execute_command("CLUSTER", "NODES")
                )
            except redis.RedisError:
                continue
            owner = next((n for n in view if any(a <= first_slot <= b for a, b in n.slots)), None)
            if owner is not None and owner.node_id != me.node_id:
                return f"{owner.address} has taken over: starting to rejoin as its replica"
        time.sleep(interval)
    return f"no replica took over within {timeout:.0f} s: starting as master"


def _answers(connector: Connector, node: ClusterNode) -> bool:
    try:
        return bool(connector.client(NodeAddress(node.ip, node.port)).ping())
    except redis.RedisError:
        return False


def prepare_node(
    path: Path,
    timeout: float,
    takeover_timeout: float,
    connector: Connector,
    resolve: Resolver = dns_resolver,
    progress: Callable[[str], None] = print,
) -> None:
    """The pod's start step: fresh IPs for every peer, then (for a master) the takeover wait."""
    rewrite = prepare_nodes_conf(path, timeout, resolve, progress)
    if rewrite is not None and takeover_timeout > 0:
        progress(await_takeover(rewrite.text, connector, takeover_timeout, progress))
