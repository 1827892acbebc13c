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

from .clusterview import parse_node_line

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
