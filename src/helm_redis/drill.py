"""`drill`: a failover drill with numbers. A master goes down (crash or graceful); its replica must take
over, and the old master must come back as a replica of the new one with the same node ID.

A bounded write load runs throughout: sequenced keys over every slot, each SET followed by WAIT on the
same connection, so a write counts as acknowledged only once all replicas of its shard have it. At the
end every acknowledged key is read back. How the fault is injected (pod deletion, process kill) is the
caller's `Faults`; this module only speaks the Redis protocol.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import redis
from redis.crc import key_slot

from .clusterview import NodeView
from .errors import HelmRedisError, NodeUnreachable, UsageError
from .nodes import Connector, NodeAddress, read_view
from .plan import Member

Mode = Literal["crash", "graceful"]
EVENTS = (
    "fault injected",
    "node down",
    "failure seen",
    "replica promoted",
    "cluster_state ok everywhere",
    "node back",
    "rejoined as replica",
    "replication link up",
)


class Faults(Protocol):
    """How to take a node down; it must come back by itself (Kubernetes, a supervisor, a test)."""

    def inject(self, target: Member, mode: Mode) -> None: ...


@dataclass
class ShardStats:
    name: str
    acknowledged: int = 0
    longest_gap: float = 0.0


@dataclass
class DrillReport:
    target: str
    mode: Mode
    new_master: str = ""
    timeline: dict[str, float] = field(default_factory=dict)
    shards: dict[str, ShardStats] = field(default_factory=dict)
    acknowledged: int = 0
    unreplicated: int = 0
    failed: int = 0
    lost_acknowledged: int = 0
    lost_unreplicated: int = 0
    unverified: int = 0
    failback: str = ""
    problems: list[str] = field(default_factory=list)
    interrupted: bool = False

    @property
    def promotion_seconds(self) -> float | None:
        return self.timeline.get("replica promoted")

    @property
    def ok(self) -> bool:
        return not self.problems

    def ordered_timeline(self) -> list[tuple[str, float]]:
        return sorted(self.timeline.items(), key=lambda item: item[1])

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "target": self.target,
            "mode": self.mode,
            "new_master": self.new_master,
            "timeline": [{"event": e, "seconds": round(t, 3)} for e, t in self.ordered_timeline()],
            "promotion_seconds": None if self.promotion_seconds is None else round(self.promotion_seconds, 3),
            "write_gap_seconds": {s.name: round(s.longest_gap, 3) for s in self.shards.values()},
            "writes": {
                "acknowledged": self.acknowledged,
                "unreplicated": self.unreplicated,
                "failed": self.failed,
                "lost_acknowledged": self.lost_acknowledged,
                "lost_unreplicated": self.lost_unreplicated,
                "unverified": self.unverified,
            },
            "failback": self.failback,
            "interrupted": self.interrupted,
            "problems": self.problems,
        }


class Router:
    """slot -> the master's address and its replica count, refreshed from any node's view on MOVED."""

    def __init__(self, connector: Connector, seeds: list[NodeAddress]) -> None:
        self.connector = connector
        self.seeds = seeds
        self.owner: dict[int, NodeAddress] = {}
        self.replicas: dict[NodeAddress, int] = {}
        self.refresh()

    def refresh(self) -> None:
        for seed in self.seeds:
            try:
                view = read_view(self.connector, seed)
            except NodeUnreachable:
                continue
            if view.state_ok:
                self._load(view)
                return

    def _load(self, view: NodeView) -> None:
        owner: dict[int, NodeAddress] = {}
        counts: dict[str, int] = {}
        for node in view.nodes:
            if node.is_replica and node.master_id and not node.is_failing:
                counts[node.master_id] = counts.get(node.master_id, 0) + 1
        replicas: dict[NodeAddress, int] = {}
        for node in view.nodes:
            if node.is_master and node.slots and not node.is_failing:
                address = NodeAddress(node.ip, node.port)
                replicas[address] = counts.get(node.node_id, 0)
                for start, end in node.slots:
                    for slot in range(start, end + 1):
                        owner[slot] = address
        self.owner, self.replicas = owner, replicas


class WriteLoad:
    """Sequenced writes over every slot, one thread per shard (a stalled shard never slows the others).

    Each write is a SET, then WAIT for all replicas on the same dedicated connection. The longest
    client-seen gap of a shard runs from the first attempt that failed to the next SET that succeeded;
    time spent in WAIT is not a gap (the write had succeeded), but a WAIT short of every replica
    leaves the write unacknowledged. Bounded in count and time.
    """

    def __init__(
        self,
        connector: Connector,
        router: Router,
        shard_of_slot: dict[int, str],
        replicas_per_master: int,
        max_writes: int,
        max_seconds: float,
        wait_timeout_ms: int = 200,
    ) -> None:
        self.connector = connector
        self.router = router
        self.shard_of_slot = shard_of_slot
        self.replicas_per_master = replicas_per_master
        self.max_seconds = max_seconds
        self.wait_timeout_ms = wait_timeout_ms
        self.run_id = uuid.uuid4().hex[:8]
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.acknowledged: list[str] = []
        self.unreplicated: list[str] = []
        self.failed = 0
        self.shards = {name: ShardStats(name) for name in sorted(set(shard_of_slot.values()))}
        self.per_shard_limit = max(1, max_writes // max(1, len(self.shards)))
        self.threads = [
            threading.Thread(target=self._run_shard, args=(name,), daemon=True, name=f"drill-{name}")
            for name in self.shards
        ]

    def key(self, seq: int) -> str:
        return f"drill:{self.run_id}:{seq}"

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def _run_shard(self, shard: str) -> None:
        stats = self.shards[shard]
        clients: dict[NodeAddress, redis.Redis] = {}
        deadline = time.monotonic() + self.max_seconds
        outage_since: float | None = None
        written = 0
        # Keys are numbered globally; this thread takes the ones that hash into its shard.
        for seq in range(self.per_shard_limit * len(self.shards) * 4):
            if written >= self.per_shard_limit or self.stop_event.is_set() or time.monotonic() > deadline:
                break
            key = self.key(seq)
            slot = key_slot(key.encode())
            if self.shard_of_slot[slot] != shard:
                continue
            written += 1
            outage_since = outage_since or time.monotonic()
            address = self.router.owner.get(slot)
            try:
                if address is None:
                    raise redis.ConnectionError("no master known for this slot")
                if address not in clients:
                    clients[address] = self.connector.dedicated(address)
                clients[address].set(key, seq)
                stats.longest_gap = max(stats.longest_gap, time.monotonic() - outage_since)
                outage_since = None
                replicated = clients[address].execute_command(
                    "WAIT", self.replicas_per_master, self.wait_timeout_ms
                )
            except (redis.RedisError, HelmRedisError):
                # MOVED after a failover, a refused or dropped connection, a pod not there yet: learn
                # the new owners, go on.
                with self.lock:
                    self.failed += 1
                if address in clients:
                    clients.pop(address).close()
                self.router.refresh()
                time.sleep(0.02)
                continue
            with self.lock:
                if int(replicated) >= self.replicas_per_master:
                    self.acknowledged.append(key)
                    stats.acknowledged += 1
                else:
                    self.unreplicated.append(key)
        if outage_since is not None:  # still failing at the end: the gap runs to the end
            stats.longest_gap = max(stats.longest_gap, time.monotonic() - outage_since)
        for client in clients.values():
            client.close()

    def finish(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=60)


class Drill:
    def __init__(
        self,
        connector: Connector,
        members: list[Member],
        faults: Faults,
        replicas_per_master: int,
        mode: Mode = "crash",
        target: str | None = None,
        timeout: float = 180.0,
        max_writes: int = 200_000,
        failback: bool = False,
        max_failover_seconds: float | None = None,
        progress: Callable[[str], None] = lambda _m: None,
    ) -> None:
        self.connector = connector
        self.members = members
        self.faults = faults
        self.replicas_per_master = replicas_per_master
        self.mode = mode
        self.target_name = target
        self.timeout = timeout
        self.max_writes = max_writes
        self.failback = failback
        self.max_failover_seconds = max_failover_seconds
        self.progress = progress

    def _views(self, members: list[Member]) -> dict[Member, NodeView]:
        views = {}
        for member in members:
            with contextlib.suppress(NodeUnreachable):
                views[member] = read_view(self.connector, member.address)
        return views

    def _choose_target(self, views: dict[Member, NodeView]) -> Member:
        masters = [m for m, v in views.items() if v.myself.is_master and v.myself.slots]
        if self.target_name:
            found = [m for m in self.members if self.target_name in (m.name, str(m.address))]
            if not found:
                raise UsageError(
                    f"no node named {self.target_name!r} (nodes: {', '.join(m.name for m in self.members)})"
                )
            if found[0] not in masters:
                raise UsageError(f"{self.target_name} is not a master serving slots: pick a master to drill")
            return found[0]
        if not masters:
            raise UsageError("no master serves slots: nothing to drill")
        return sorted(masters, key=lambda m: m.ordinal)[0]

    def run(self) -> DrillReport:
        views = self._views(self.members)
        target = self._choose_target(views)
        target_view = views[target]
        target_id = target_view.node_id
        name_of = {v.node_id: m.name for m, v in views.items()}
        replicas = [m for m, v in views.items() if v.myself.master_id == target_id]
        report = DrillReport(target=target.name, mode=self.mode)
        self.progress(
            f"target: {target.name} (master of {len(target_view.myself.slots)} slot range(s)), "
            f"replicas: {', '.join(r.name for r in replicas) or 'none'}"
        )
        if not replicas:
            raise UsageError(f"{target.name} has no replica: a failover drill would lose its slots")

        shard_of_slot = {
            slot: name_of[v.node_id]
            for v in views.values()
            if v.myself.is_master
            for start, end in v.myself.slots
            for slot in range(start, end + 1)
        }
        others = [m for m in self.members if m != target]
        router = Router(self.connector, [m.address for m in others])
        load = WriteLoad(
            self.connector,
            router,
            shard_of_slot,
            self.replicas_per_master,
            self.max_writes,
            self.timeout + 30,
        )
        load.start()
        started = time.monotonic()
        try:
            time.sleep(0.5)  # a baseline of writes before the fault
            started = time.monotonic()
            report.timeline["fault injected"] = 0.0  # the clock starts as the fault is injected
            self.faults.inject(target, self.mode)
            self.progress(f"{self.mode} of {target.name} injected")
            self._watch(report, target, target_id, replicas, others, started, name_of)
            time.sleep(0.5)  # writes after recovery
        except KeyboardInterrupt:
            report.interrupted = True
            report.problems.append("interrupted: the drill stopped before the end")
        finally:
            load.finish()
        self._account(report, load)
        if self.failback and report.new_master and not report.interrupted:
            self._failback(report, target, started)
        self._judge(report)
        return report

    def _watch(
        self,
        report: DrillReport,
        target: Member,
        target_id: str,
        replicas: list[Member],
        others: list[Member],
        started: float,
        name_of: dict[str, str],
    ) -> None:
        deadline = started + self.timeout
        mark = report.timeline
        while time.monotonic() < deadline:
            now = time.monotonic() - started
            views = self._views(others)
            if "failure seen" not in mark and any(
                n.node_id == target_id and n.is_failing for v in views.values() for n in v.nodes
            ):
                mark["failure seen"] = now
                self.progress(f"failure of {target.name} seen after {now:.2f} s")
            promoted = [
                r for r in replicas if r in views and views[r].myself.is_master and views[r].myself.slots
            ]
            if "replica promoted" not in mark and promoted:
                mark["replica promoted"] = now
                report.new_master = promoted[0].name
                self.progress(f"{promoted[0].name} promoted after {now:.2f} s")
            if (
                "replica promoted" in mark
                and "cluster_state ok everywhere" not in mark
                and views
                and all(v.state_ok for v in views.values())
            ):
                mark["cluster_state ok everywhere"] = now
                self.progress(f"cluster_state:ok on every other node after {now:.2f} s")
            self._watch_target(report, target, target_id, views, promoted, now)
            if "replication link up" in mark and "cluster_state ok everywhere" in mark:
                return
            time.sleep(0.05)
        missing = [
            e for e in EVENTS if e not in mark and not (e == "failure seen" and self.mode == "graceful")
        ]
        report.problems.append(f"timed out after {self.timeout:.0f} s waiting for: {', '.join(missing)}")

    def _watch_target(
        self,
        report: DrillReport,
        target: Member,
        target_id: str,
        views: dict[Member, NodeView],
        promoted: list[Member],
        now: float,
    ) -> None:
        mark = report.timeline
        if "fault injected" not in mark:
            return
        try:
            view = read_view(self.connector, target.address)
        except NodeUnreachable:
            if "node down" not in mark:
                mark["node down"] = now
                self.progress(f"{target.name} is down after {now:.2f} s")
            return
        if "node down" not in mark:
            return  # still the old process (a graceful stop hands over before it exits)
        if "node back" not in mark:
            mark["node back"] = now
            if view.node_id != target_id:
                report.problems.append(
                    f"{target.name} came back with a new node ID {view.node_id[:8]} (was {target_id[:8]}): "
                    "nodes.conf was not kept on its volume"
                )
                return
            self.progress(f"{target.name} answers again after {now:.2f} s (same node ID)")
        if "node back" not in mark or not promoted:
            return
        new_master_id = next((v.node_id for m, v in views.items() if m == promoted[0]), None)
        if (
            "rejoined as replica" not in mark
            and view.myself.is_replica
            and view.myself.master_id == new_master_id
        ):
            mark["rejoined as replica"] = now
            self.progress(f"{target.name} rejoined as a replica of {promoted[0].name} after {now:.2f} s")
        linked = view.replication.get("master_link_status") == "up"
        if "rejoined as replica" in mark and "replication link up" not in mark and linked:
            mark["replication link up"] = now
            self.progress(f"replication link up after {now:.2f} s")

    def _account(self, report: DrillReport, load: WriteLoad) -> None:
        report.shards = load.shards
        report.acknowledged = len(load.acknowledged)
        report.unreplicated = len(load.unreplicated)
        report.failed = load.failed
        load.router.refresh()
        report.lost_acknowledged, unverified = self._count_missing(load, load.acknowledged)
        report.lost_unreplicated, unverified_unreplicated = self._count_missing(load, load.unreplicated)
        report.unverified = unverified + unverified_unreplicated
        if report.unverified and not report.interrupted:
            report.problems.append(f"{report.unverified} written key(s) could not be read back (no master)")
        self.progress(
            f"writes: {report.acknowledged} acknowledged ({report.lost_acknowledged} lost), "
            f"{report.unreplicated} not acknowledged by every replica ({report.lost_unreplicated} lost), "
            f"{report.failed} failed"
        )

    def _count_missing(self, load: WriteLoad, keys: list[str]) -> tuple[int, int]:
        """Read every key back from its current master (pipelined per node): (missing, unverifiable).

        A key whose shard has no reachable master (an interrupted drill) is unverifiable, not lost.
        """
        by_node: dict[NodeAddress | None, list[str]] = {}
        for key in keys:
            by_node.setdefault(load.router.owner.get(key_slot(key.encode())), []).append(key)
        missing = 0
        unverifiable = len(by_node.pop(None, []))
        for address, node_keys in by_node.items():
            for start in range(0, len(node_keys), 1000):
                chunk = node_keys[start : start + 1000]
                try:
                    pipe = self.connector.client(address).pipeline(transaction=False)
                    for key in chunk:
                        pipe.get(key)
                    values = pipe.execute()
                except redis.RedisError:
                    unverifiable += len(chunk)
                    continue
                missing += sum(
                    1 for key, value in zip(chunk, values, strict=True) if value != key.rsplit(":", 1)[1]
                )
        return missing, unverifiable

    def _failback(self, report: DrillReport, target: Member, started: float) -> None:
        """Give the slots back to the original master (CLUSTER FAILOVER on it, now a replica)."""
        try:
            self.connector.client(target.address).execute_command("CLUSTER", "FAILOVER")
        except redis.RedisError as error:
            report.problems.append(f"failback refused: {error}")
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if read_view(self.connector, target.address).myself.is_master:
                    report.failback = f"{target.name} is master again"
                    self.progress(report.failback)
                    return
            except NodeUnreachable:
                pass
            time.sleep(0.05)
        report.problems.append(f"failback: {target.name} did not become master again within 30 s")

    def _judge(self, report: DrillReport) -> None:
        if report.lost_acknowledged:
            report.problems.append(f"{report.lost_acknowledged} acknowledged write(s) lost")
        promotion = report.promotion_seconds
        if (
            self.max_failover_seconds is not None
            and promotion is not None
            and promotion > self.max_failover_seconds
        ):
            report.problems.append(
                f"promotion took {promotion:.2f} s, "
                f"more than --max-failover-seconds {self.max_failover_seconds:g}"
            )
