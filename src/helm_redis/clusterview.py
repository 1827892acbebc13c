"""What one Redis node believes about the cluster: parsed `CLUSTER NODES`, `CLUSTER INFO` and `INFO`.

Pure parsing, no I/O: the same parser reads `CLUSTER NODES` replies and `nodes.conf` files (same format).
"""

from __future__ import annotations

from dataclasses import dataclass, field

TOTAL_SLOTS = 16384

SlotRange = tuple[int, int]


@dataclass(frozen=True)
class ClusterNode:
    """One line of `CLUSTER NODES`: a node as seen by the node that was asked."""

    node_id: str
    ip: str
    port: int
    bus_port: int
    hostname: str
    flags: frozenset[str]
    master_id: str | None
    config_epoch: int
    connected: bool
    slots: tuple[SlotRange, ...] = ()
    migrating: dict[int, str] = field(default_factory=dict)  # slot -> destination node id
    importing: dict[int, str] = field(default_factory=dict)  # slot -> source node id

    @property
    def is_myself(self) -> bool:
        return "myself" in self.flags

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def is_replica(self) -> bool:
        return "slave" in self.flags

    @property
    def is_failing(self) -> bool:
        return bool(self.flags & {"fail", "fail?"})

    @property
    def is_settled(self) -> bool:
        """Known by ID, reachable and not in a handshake: a full member as far as this view goes."""
        return not (self.flags & {"handshake", "noaddr", "fail", "fail?"})

    @property
    def slot_count(self) -> int:
        return sum(end - start + 1 for start, end in self.slots)

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"


def _parse_slots(fields: list[str]) -> tuple[tuple[SlotRange, ...], dict[int, str], dict[int, str]]:
    slots: list[SlotRange] = []
    migrating: dict[int, str] = {}
    importing: dict[int, str] = {}
    for item in fields:
        if item.startswith("["):
            body = item.strip("[]")
            if "->-" in body:
                slot, target = body.split("->-")
                migrating[int(slot)] = target
            elif "-<-" in body:
                slot, source = body.split("-<-")
                importing[int(slot)] = source
            continue
        start, _, end = item.partition("-")
        slots.append((int(start), int(end or start)))
    return tuple(slots), migrating, importing


def parse_node_line(line: str) -> ClusterNode:
    """Parse one line of `CLUSTER NODES` / `nodes.conf` (Redis 6 and 7 formats)."""
    fields = line.split()
    if len(fields) < 8:
        raise ValueError(f"not a CLUSTER NODES line: {line!r}")
    node_id, address, flags, master, _ping, _pong, epoch, link = fields[:8]
    endpoint, _, aux = address.partition(",")
    hostname = ""
    if aux:
        first = aux.split(",")[0]
        hostname = "" if "=" in first else first
    hostport, _, bus = endpoint.partition("@")
    ip, _, port = hostport.rpartition(":")
    slots, migrating, importing = _parse_slots(fields[8:])
    return ClusterNode(
        node_id=node_id,
        ip=ip,
        port=int(port or 0),
        bus_port=int(bus or 0),
        hostname=hostname,
        flags=frozenset(flags.split(",")),
        master_id=None if master == "-" else master,
        config_epoch=int(epoch),
        connected=link == "connected",
        slots=slots,
        migrating=migrating,
        importing=importing,
    )


def parse_cluster_nodes(text: str) -> list[ClusterNode]:
    """Parse a whole `CLUSTER NODES` reply (or `nodes.conf`, whose `vars` line is skipped)."""
    return [
        parse_node_line(line) for line in text.splitlines() if line.strip() and not line.startswith("vars ")
    ]


def parse_info(text: str) -> dict[str, str]:
    """Parse `INFO`/`CLUSTER INFO` text into a flat dict of strings."""
    result: dict[str, str] = {}
    for line in text.splitlines():
        if not line or line.startswith("#") or ":" not in line:
            continue
        key, _, value = line.partition(":")
        result[key.strip()] = value.strip()
    return result


@dataclass(frozen=True)
class NodeView:
    """One node's own view: who it is, whom it knows, and its replication and data state."""

    address: str  # how we reached it (host:port)
    nodes: tuple[ClusterNode, ...]
    cluster_info: dict[str, str]
    replication: dict[str, str]
    keys: int
    appendonly: bool = True

    @property
    def myself(self) -> ClusterNode:
        return next(node for node in self.nodes if node.is_myself)

    @property
    def node_id(self) -> str:
        return self.myself.node_id

    @property
    def state_ok(self) -> bool:
        return self.cluster_info.get("cluster_state") == "ok"

    @property
    def knows_only_itself(self) -> bool:
        return len(self.nodes) == 1

    def by_id(self) -> dict[str, ClusterNode]:
        return {node.node_id: node for node in self.nodes}

    def slot_map(self) -> dict[str, tuple[SlotRange, ...]]:
        """node id -> slot ranges, for every slot owner this node knows."""
        return {node.node_id: node.slots for node in self.nodes if node.slots}

    def signature(self) -> str:
        """redis-cli's consistency signature: sorted `id:slots` of every slot owner."""
        parts = []
        for node_id, ranges in sorted(self.slot_map().items()):
            parts.append(node_id + ":" + ",".join(f"{a}-{b}" for a, b in sorted(ranges)))
        return "|".join(parts)

    def open_slots(self) -> dict[int, str]:
        """Slots this node reports as migrating or importing (slot -> description)."""
        me = self.myself
        opened = {slot: f"migrating to {dest}" for slot, dest in me.migrating.items()}
        opened.update({slot: f"importing from {src}" for slot, src in me.importing.items()})
        return opened


def covered_slots(slot_map: dict[str, tuple[SlotRange, ...]]) -> int:
    seen: set[int] = set()
    for ranges in slot_map.values():
        for start, end in ranges:
            seen.update(range(start, end + 1))
    return len(seen)


def compress_slots(slots: list[int]) -> list[SlotRange]:
    """[1,2,3,7] -> [(1,3),(7,7)]"""
    ranges: list[SlotRange] = []
    for slot in sorted(slots):
        if ranges and ranges[-1][1] == slot - 1:
            ranges[-1] = (ranges[-1][0], slot)
        else:
            ranges.append((slot, slot))
    return ranges


def format_ranges(ranges: tuple[SlotRange, ...] | list[SlotRange]) -> str:
    return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in ranges) or "-"
