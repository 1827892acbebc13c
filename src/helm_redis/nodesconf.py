"""The pods' start step: point `nodes.conf` at the peers' current IPs before redis-server starts.

The cluster bus dials the IPs stored in `nodes.conf`, never hostnames. After every pod restarts at once
(all IPs new), no node could reach any other. Each line also stores the peer's announced hostname
(`ip:port@cport,hostname`, Redis >= 7.0): resolving it again gives the new IP.

Before touching the file it is checked line by line: Redis refuses to start on a corrupt cluster config
("Unrecoverable error: corrupted cluster config file"), so a file cut short by a crash or a full disk is
reported here in one line that names the line and the way out, instead of a crash loop without a hint.
The rewrite itself is durable: a temporary file in the same directory, fsync'ed, renamed over
nodes.conf, and the directory fsync'ed, so a crash at any moment leaves the old file or the new one.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import stat
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from .clusterview import TOTAL_SLOTS, ClusterNode, parse_cluster_nodes, parse_node_line
from .errors import CorruptNodesConf
from .nodes import Connector, NodeAddress

Resolver = Callable[[str], str | None]


def dns_resolver(hostname: str) -> str | None:
    """The first address of `hostname`, or None while it does not resolve (the pod has no IP yet)."""
    try:
        return socket.getaddrinfo(hostname, None, proto=socket.IPPROTO_TCP)[0][4][0]
    except (socket.gaierror, UnicodeError):
        return None


_NODE_ID = re.compile(r"[0-9a-z]{40}")  # Redis accepts [0-9a-z], 40 characters
_ADDRESS = re.compile(
    r"[^\s@]*:\d+(@\d+)?(,.*)?"
)  # ip:port@cport[,hostname[,aux...]]; a fresh node has no ip
_FLAGS = re.compile(r"[a-z?]+(,[a-z?]+)*")
_SLOT_STATE = re.compile(r"\[(\d+)-[<>]-([0-9a-z]{40})\]")  # [slot->-id] migrating, [slot-<-id] importing
_LINKS = ("connected", "disconnected")


def _line_problem(fields: list[str]) -> str | None:
    """What is wrong with one node line of nodes.conf (split into fields), or None."""
    if not _NODE_ID.fullmatch(fields[0]):
        shown = " ".join(fields)[:40]
        return f"does not start with a node ID (40 characters 0-9a-z): {shown!r}"
    if len(fields) < 8:
        return f"has {len(fields)} of the 8 fields of a node line (cut off)"
    address, flags, master, ping, pong, epoch, link = fields[1:8]
    if not _ADDRESS.fullmatch(address):
        return f"has {address!r} where IP:PORT@BUSPORT belongs"
    if not _FLAGS.fullmatch(flags):
        return f"has {flags!r} where the flags belong"
    if master != "-" and not _NODE_ID.fullmatch(master):
        return f"has {master!r} where its master's node ID (or -) belongs"
    for name, value in (("ping time", ping), ("pong time", pong), ("config epoch", epoch)):
        if not value.isdigit():
            return f"has {value!r} where the {name} belongs"
    if link not in _LINKS:
        return f"has {link!r} where the link state (connected or disconnected) belongs"
    for item in fields[8:]:
        if item.startswith("["):
            if not _SLOT_STATE.fullmatch(item):
                return f"has {item!r} where a migrating or importing slot belongs"
            continue
        start, dash, end = item.partition("-")
        if not start.isdigit() or (dash and not end.isdigit()):
            return f"has {item!r} where a slot or a slot range belongs"
        if not int(start) <= int(end or start) < TOTAL_SLOTS:
            return f"has slot range {item!r} outside 0-{TOTAL_SLOTS - 1}"
    return None


def _vars_problem(fields: list[str]) -> str | None:
    if len(fields) % 2 == 0:
        return f"is a vars line with a name but no value: {' '.join(fields)!r}"
    for name, value in zip(fields[1::2], fields[2::2], strict=True):
        if name in ("currentEpoch", "lastVoteEpoch") and not value.isdigit():
            return f"has {value!r} where the number {name} belongs"
    return None


def _corrupt(path: Path, problem: str, old_id: str | None, empty: bool = False) -> CorruptNodesConf:
    """One line: the file, what is wrong with it, and the honest way out."""
    consequence = (
        "Redis would silently start this node under a new node ID"
        if empty
        else "Redis refuses a corrupt cluster config, so this node cannot start with it"
    )
    forget = (
        f"CLUSTER FORGET {old_id}" if old_id else "CLUSTER FORGET the old node ID (the one they flag fail)"
    )
    return CorruptNodesConf(
        f"{path}: {problem}. {consequence}. Fix: move it aside (mv {path} {path}.corrupt) and the node "
        f"starts with a new node ID that knows no peer; then run the formation hook again (helm upgrade) "
        f"to add it back, and {forget} on every other node"
    )


def check_nodes_conf(path: Path, data: bytes) -> str:
    """The text of a nodes.conf that Redis can load; else `CorruptNodesConf` naming the first problem."""
    if not data.strip(b" \t\r\n"):
        raise _corrupt(path, f"the file is empty ({len(data)} bytes: no node ID, no peers)", None, empty=True)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise _corrupt(path, f"line {line} is not text (byte {data[error.start]:#04x})", None) from None
    lines = text.split("\n")
    last = max(i for i, line in enumerate(lines) if line.strip())
    myself: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    problem: str | None = None
    where = 0
    for index, line in enumerate(lines):
        number = index + 1
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) > 2 and _NODE_ID.fullmatch(fields[0]) and "myself" in fields[2].split(","):
            myself.append((number, fields[0]))  # even from a line cut after its flags: the ID is known
        if "\0" in line:
            problem, where = "holds NUL bytes (blocks that were never written)", number
            break
        if index == last and not text.endswith("\n"):
            problem, where = "is cut off (no newline at its end: the file was not completely written)", number
            break
        if fields[0] == "vars":
            problem, where = _vars_problem(fields), number
            if problem:
                break
            continue
        problem, where = _line_problem(fields), number
        if problem:
            break
        if fields[0] in seen:
            problem = f"repeats node ID {fields[0][:8]}... of line {seen[fields[0]]}"
            break
        seen[fields[0]] = number
    old_id = myself[0][1] if myself else None
    if problem:
        raise _corrupt(path, f"line {where} {problem}", old_id)
    if not myself:
        raise _corrupt(path, "no line is flagged myself (the node's own entry, with its ID, is gone)", None)
    if len(myself) > 1:
        raise _corrupt(path, f"lines {myself[0][0]} and {myself[1][0]} are both flagged myself", None)
    return text


def write_durably(path: Path, text: str) -> None:
    """Replace `path` with `text` so that a crash at any moment leaves the old file or the new one:
    a temporary file in the same directory, flushed and fsync'ed, renamed over `path`, then the
    directory fsync'ed (the rename itself is durable only then). Keeps the file's permission bits."""
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o644
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            os.fchmod(file.fileno(), mode)
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_directory(path.parent)


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
    Returns None for a fresh node (no nodes.conf yet); raises `CorruptNodesConf` for a file Redis
    could not load.
    """
    if not path.exists():
        progress(f"{path} does not exist yet: a fresh node, nothing to prepare")
        return None
    original = check_nodes_conf(path, path.read_bytes())
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
        write_durably(path, rewrite.text)
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


def set_aside_if_forgotten(
    path: Path, text: str, connector: Connector, progress: Callable[[str], None] = print
) -> bool:
    """A volume whose node the running cluster has forgotten starts empty; its files are kept aside.

    That is a pod removed by a scale-in whose claim was kept (`whenScaled: Retain`) and that a later
    scale-out brings back: its node ID is forgotten everywhere and its data is a stale copy of a shard
    (a scale-in leaves no slot on a leaving pod). Coming back as that node would make it a replica again
    and leave no empty node for the new shape. Everything in the data directory moves to
    `departed-<id>-<time>/` beside it (nothing is deleted) and Redis starts as a new, empty node.

    Only then: the node serves no slots in its own config (its data is never the only copy), and at
    least one peer answers that belongs to a cluster serving slots and none of them lists this node.
    """
    nodes = parse_cluster_nodes(text)
    me = next((n for n in nodes if n.is_myself), None)
    if me is None or me.slots:
        return False
    clusters = []
    for peer in (n for n in nodes if not n.is_myself and n.ip):
        try:
            reply = connector.client(NodeAddress(peer.ip, peer.port)).execute_command("CLUSTER", "NODES")
        except redis.RedisError:
            continue
        view = parse_cluster_nodes(reply)
        if any(n.slots for n in view):
            clusters.append(view)
    if not clusters or any(me.node_id in {n.node_id for n in view} for view in clusters):
        return False
    aside = path.parent / f"departed-{me.node_id[:8]}-{int(time.time())}"
    aside.mkdir()
    for entry in sorted(path.parent.iterdir()):
        if entry != aside and not entry.name.startswith("departed-") and entry.name != "lost+found":
            entry.rename(aside / entry.name)
    _fsync_directory(path.parent)
    progress(
        f"the cluster has forgotten this node ({me.node_id[:8]}, removed by a scale-in): its files are "
        f"kept in {aside} and it starts as a new empty node"
    )
    return True


def _fsync_directory(directory: Path) -> None:
    """Make renames in `directory` durable."""
    descriptor = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


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
    if rewrite is not None and set_aside_if_forgotten(path, rewrite.text, connector, progress):
        return
    if rewrite is not None and takeover_timeout > 0:
        progress(await_takeover(rewrite.text, connector, takeover_timeout, progress))
