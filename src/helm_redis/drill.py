"""`drill`: failover drills with numbers, and the write load they measure with.

Fault drills (`Drill`): a master is taken down in one of four ways, each meaning what it says, and the
drill checks the outcome that way should have (see MODES). How the fault is injected is the caller's
`Faults` (pod deletion, a process command); this module only speaks the Redis protocol. Each drill
proves its fault: a replica that runs CLUSTER FAILOVER sends MFSTART to its master, and its
`cluster_stats_messages_mfstart_sent` (CLUSTER INFO) keeps counting across the drill (the replicas do not
restart). A graceful drill must show one; a restart, hang or crash drill must show none, or the promotion
it measured was a planned handover and the drill is invalid.

Rollout drills (`RolloutDrill`): something rolls every node (a StatefulSet's rolling restart, a
`Rollout`); the drill records every handover and, per shard, the longest time no master took writes.

Both measure with `WriteLoad`: sequenced keys over every slot, one writer per shard, each SET followed by
WAIT on the same connection, so a write counts as acknowledged only once all replicas of its shard have
it; at the end every acknowledged key is read back. `LoadRun` runs that load around any operation (a
`helm upgrade`, a `kubectl rollout restart`) and reports per shard:

    target = open_release("redis", "cache")          # or any object with .connector, .members, .expected
    with LoadRun.on(target) as load:
        ...                                          # the operation under test
    result = load.result                             # LoadResult
    result.lost_acknowledged, result.longest_gaps, result.shards["redis-cluster-0"].acknowledged
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import redis
from redis.crc import key_slot

from .clusterview import NodeView, format_ranges
from .errors import HelmRedisError, NodeUnreachable, UsageError
from .health import DONE_CHECKS, Expectation, assess, failed
from .nodes import Connector, NodeAddress, parallel, read_view
from .plan import Member

Mode = Literal["graceful", "restart", "hang", "crash"]
DrillMode = Literal["graceful", "restart", "hang", "crash", "rollout"]

# What each mode does and the outcome it expects (the CLI's --mode help is built from these).
MODES: dict[str, str] = {
    "graceful": "normal pod deletion: the preStop hands the slots to a replica (CLUSTER FAILOVER), then "
    "Redis stops (--nodes: the same handover, then SHUTDOWN). Expects promotion well under a second and "
    "proof of a manual failover; none fails the drill.",
    "restart": "the Redis process exits at once (SHUTDOWN NOSAVE NOW) and the kubelet restarts the "
    "container in the same pod (--nodes: your supervisor). Expects the node back by itself, no acknowledged "
    "write lost; a failover may or may not happen (reported), never a manual one.",
    "hang": "the Redis process freezes (DEBUG SLEEP 2 x node timeout + 3 s; needs enable-debug-command "
    "local). Expects Redis's own election (promotion ~ node timeout + election, no manual failover); the old "
    "master wakes and rejoins as a replica.",
    "crash": "the master is lost without a handover: frozen, then its pod deleted with grace period 0, so "
    "the preStop cannot hand over (like a node loss); --nodes: SHUTDOWN NOSAVE NOW. Expects an unplanned "
    "failover after the node timeout; the pod comes back and rejoins as a replica with its node ID.",
    "rollout": "rolling restart of the release's StatefulSet (as kubectl rollout restart) under write load, "
    "until the rollout is complete and the cluster healthy. Reports every handover and, per shard, the "
    "longest unwritable time and lost writes (must be 0). A release only, not --nodes.",
}

# The events of a drill that ends in a failover, in the order they usually happen.
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
# A restart that ends without a failover: the master is back, its replicas follow it again.
NO_FAILOVER_EVENTS = ("fault injected", "node down", "node back", "returned as master", "replication link up")
MFSTART_SENT = "cluster_stats_messages_mfstart_sent"


class Faults(Protocol):
    """How to take a node down; it must come back by itself (Kubernetes, a supervisor, a test)."""

    def inject(self, target: Member, mode: Mode) -> None: ...


class Rollout(Protocol):
    """Something that restarts every node in turn (a StatefulSet's rolling update)."""

    name: str

    def start(self) -> None: ...

    def status(self) -> RolloutStatus: ...


@dataclass(frozen=True)
class RolloutStatus:
    complete: bool
    detail: str


@dataclass
class ShardStats:
    """One shard, named by its master at the start; `longest_gap`: the longest client-seen time in which
    no write to the shard succeeded (seconds)."""

    name: str
    slots: str = ""
    acknowledged: int = 0
    longest_gap: float = 0.0
    lost: int = 0
    exhausted: bool = False  # its writer reached the write bound before it was stopped

    def as_dict(self) -> dict[str, object]:
        return {
            "shard": self.name,
            "slots": self.slots,
            "longest_gap_seconds": round(self.longest_gap, 3),
            "acknowledged": self.acknowledged,
            "lost": self.lost,
        }


@dataclass(frozen=True)
class Handover:
    """A shard's slots moved from one master to another (seconds after the start of the operation)."""

    seconds: float
    shard: str
    old: str
    new: str

    def as_dict(self) -> dict[str, object]:
        return {"seconds": round(self.seconds, 3), "shard": self.shard, "from": self.old, "to": self.new}


@dataclass
class DrillReport:
    target: str
    mode: DrillMode
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
    outcome: str = ""
    # MFSTART messages the target's replicas sent during the drill: the proof of a (manual) handover.
    manual_failovers: int | None = None
    node_timeout_seconds: float | None = None
    handovers: list[Handover] = field(default_factory=list)
    rollout: str = ""  # the rollout's last status (rollout mode)
    # Whether a failover controller was watching (a release): who answers an unplanned failover.
    failover_controller: str = ""

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
            "outcome": self.outcome,
            "new_master": self.new_master,
            "manual_failovers": self.manual_failovers,
            "node_timeout_seconds": self.node_timeout_seconds,
            "failover_controller": self.failover_controller,
            "timeline": [{"event": e, "seconds": round(t, 3)} for e, t in self.ordered_timeline()],
            "promotion_seconds": None if self.promotion_seconds is None else round(self.promotion_seconds, 3),
            "write_gap_seconds": {s.name: round(s.longest_gap, 3) for s in self.shards.values()},
            "shards": [s.as_dict() for s in self.shards.values()],
            "handovers": [h.as_dict() for h in self.handovers],
            "rollout": self.rollout,
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


def node_timeout_seconds(connector: Connector, address: NodeAddress) -> float | None:
    """The node's `cluster-node-timeout` (CONFIG GET), in seconds; None when it cannot be read."""
    try:
        value = connector.client(address).config_get("cluster-node-timeout").get("cluster-node-timeout")
        return int(value) / 1000 if value is not None else None
    except (redis.RedisError, ValueError):
        return None


def manual_failovers_sent(view: NodeView) -> int:
    """How many manual failovers this node started as a replica (MFSTART messages it sent)."""
    return int(view.cluster_info.get(MFSTART_SENT, 0) or 0)


def read_views_of(connector: Connector, members: list[Member]) -> dict[Member, NodeView]:
    """The views of the members that answer (in parallel); the others are left out."""

    def read(member: Member) -> NodeView | None:
        try:
            return read_view(connector, member.address)
        except NodeUnreachable:
            return None

    return {m: v for m, v in zip(members, parallel(read, members), strict=True) if v is not None}


def shards_of(views: dict[Member, NodeView]) -> tuple[dict[int, str], dict[str, str]]:
    """(slot -> shard, shard -> its slot ranges): each shard named by the member that is its master now."""
    shard_of_slot: dict[int, str] = {}
    ranges: dict[str, str] = {}
    for member, view in views.items():
        if view.myself.is_master and view.myself.slots:
            ranges[member.name] = format_ranges(view.myself.slots)
            for start, end in view.myself.slots:
                for slot in range(start, end + 1):
                    shard_of_slot[slot] = member.name
    return shard_of_slot, ranges


class Router:
    """slot -> the master's address and its replica count, refreshed from any node's view on MOVED."""

    def __init__(self, connector: Connector, seeds: list[NodeAddress]) -> None:
        self.connector = connector
        self.seeds = seeds
        self._refreshing = threading.Lock()
        self.owner: dict[int, NodeAddress] = {}
        self.replicas: dict[NodeAddress, int] = {}
        self.replicas_of: dict[NodeAddress, list[NodeAddress]] = {}
        self.refresh()

    def refresh(self) -> None:
        """Reload from the first seed whose view says cluster_state:ok. Writers that fail together
        share one refresh: a caller that finds one under way waits for it instead of starting another."""
        if not self._refreshing.acquire(blocking=False):
            with self._refreshing:
                return
        try:
            for seed in self.seeds:
                try:
                    view = read_view(self.connector, seed)
                except (NodeUnreachable, redis.RedisError, OSError, ValueError):
                    # ValueError/OSError: a connection closed under a read by the client library itself
                    continue
                if view.state_ok:
                    self._load(view)
                    return
        finally:
            self._refreshing.release()

    def _load(self, view: NodeView) -> None:
        owner: dict[int, NodeAddress] = {}
        following: dict[str, list[NodeAddress]] = {}
        for node in view.nodes:
            if node.is_replica and node.master_id and not node.is_failing:
                following.setdefault(node.master_id, []).append(NodeAddress(node.ip, node.port))
        replicas: dict[NodeAddress, int] = {}
        replicas_of: dict[NodeAddress, list[NodeAddress]] = {}
        for node in view.nodes:
            if node.is_master and node.slots and not node.is_failing:
                address = NodeAddress(node.ip, node.port)
                replicas_of[address] = following.get(node.node_id, [])
                replicas[address] = len(replicas_of[address])
                for start, end in node.slots:
                    for slot in range(start, end + 1):
                        owner[slot] = address
        self.owner, self.replicas, self.replicas_of = owner, replicas, replicas_of


class WriteLoad:
    """Sequenced writes over every slot, one thread per shard (a stalled shard never slows the others).

    Each write is a SET (following MOVED and ASK redirects), then WAIT for all replicas on the same
    dedicated connection. The longest
    client-seen gap of a shard runs from the first attempt that failed (or from a WAIT that failed: the
    node froze or died after the SET) to the next SET that succeeded; time spent in a WAIT that returns
    is not a gap (the write had succeeded), but a WAIT short of every replica leaves the write
    unacknowledged. Bounded in count (`max_writes` over all shards) and time;
    `interval` paces each writer (at most one write per interval), so a long run stays within its bound.
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
        interval: float = 0.0,
        slots_of_shard: dict[str, str] | None = None,
        warm_every: float = 2.0,
    ) -> None:
        self.connector = connector
        self.warm_every = warm_every
        self.router = router
        self.shard_of_slot = shard_of_slot
        self.replicas_per_master = replicas_per_master
        self.max_seconds = max_seconds
        self.wait_timeout_ms = wait_timeout_ms
        self.interval = interval
        self.run_id = uuid.uuid4().hex[:8]
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.acknowledged: list[str] = []
        self.unreplicated: list[str] = []
        self.failed = 0
        slots_of_shard = slots_of_shard or {}
        self.shards = {
            name: ShardStats(name, slots_of_shard.get(name, ""))
            for name in sorted(set(shard_of_slot.values()))
        }
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
        next_write = time.monotonic()
        home = min(slot for slot, name in self.shard_of_slot.items() if name == shard)
        next_warm = 0.0
        # Keys are numbered globally; this thread takes the ones that hash into its shard.
        for seq in range(self.per_shard_limit * len(self.shards) * 4):
            if self.stop_event.is_set() or time.monotonic() > deadline:
                break
            if self.warm_every and time.monotonic() >= next_warm:
                self._warm(clients, home, refresh=next_warm > 0)
                next_warm = time.monotonic() + self.warm_every
            if written >= self.per_shard_limit:
                stats.exhausted = True
                break
            key = self.key(seq)
            slot = key_slot(key.encode())
            if self.shard_of_slot.get(slot) != shard:
                continue
            if self.interval:
                pause = next_write - time.monotonic()
                if pause > 0 and self.stop_event.wait(pause):
                    break
                next_write = max(next_write, time.monotonic() - self.interval) + self.interval
            written += 1
            outage_since = outage_since or time.monotonic()
            waiting_since: float | None = None
            used: list[NodeAddress] = []
            try:
                client = self._set(clients, slot, key, seq, used)
                waiting_since = time.monotonic()
                stats.longest_gap = max(stats.longest_gap, waiting_since - outage_since)
                outage_since = None
                replicated = client.execute_command("WAIT", self.replicas_per_master, self.wait_timeout_ms)
            except (redis.RedisError, HelmRedisError, OSError, ValueError):
                if waiting_since is not None:
                    # WAIT itself failed (the node froze or died after the SET): the shard has been
                    # unusable since then, not only from the next attempt on.
                    outage_since = waiting_since
                # A refused or dropped connection, a pod not there yet, CLUSTERDOWN: a fresh connection
                # next time, and the owners as the cluster sees them now.
                with self.lock:
                    self.failed += 1
                if used and used[-1] in clients:
                    clients.pop(used[-1]).close()
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

    def _warm(self, clients: dict[NodeAddress, redis.Redis], home: int, refresh: bool) -> None:
        """Keep a connection open to every replica of the shard's master, as a cluster client keeps one
        to every node it knows: after a handover the first write to the new master then measures the
        server, not a new connection (through a port-forward, a new stream takes a while)."""
        if refresh:
            self.router.refresh()  # pods restarted by a rollout come back with new addresses
        master = self.router.owner.get(home)
        wanted = set(self.router.replicas_of.get(master, [])) if master else set()
        for address in list(clients):
            if address != master and address not in wanted:
                clients.pop(address).close()
        for address in wanted - set(clients):
            with contextlib.suppress(redis.RedisError, HelmRedisError, OSError, ValueError):
                clients[address] = self.connector.dedicated(address)

    def _set(
        self,
        clients: dict[NodeAddress, redis.Redis],
        slot: int,
        key: str,
        seq: int,
        used: list[NodeAddress],
    ) -> redis.Redis:
        """SET on the slot's master, following redirects as a cluster client does: MOVED (a failover or
        a finished slot move: the router learns the new owner) and ASK (a slot being moved: ASKING,
        then the SET on the importing node). Returns the client that took the write; `used` gets every
        address tried, the last one last."""
        address = self.router.owner.get(slot)
        asking = False
        for _ in range(3):
            if address is None:
                raise redis.ConnectionError("no master known for this slot")
            used.append(address)
            if address not in clients:
                clients[address] = self.connector.dedicated(address)
            client = clients[address]
            try:
                if asking:
                    client.execute_command("ASKING")
                client.set(key, seq)
                return client
            except redis.exceptions.MovedError as moved:
                address, asking = NodeAddress(moved.host, moved.port), False
                self.router.owner[slot] = address
            except redis.exceptions.AskError as ask:
                address, asking = NodeAddress(ask.host, ask.port), True
        raise redis.ConnectionError(f"slot {slot}: redirected more than twice")

    def finish(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=60)


@dataclass
class LoadResult:
    """What a write load saw. `shards` are named by their master at the start (pod name or address)."""

    shards: dict[str, ShardStats]
    acknowledged: int
    unreplicated: int
    failed: int
    lost_acknowledged: int
    lost_unreplicated: int
    unverified: int  # keys whose shard had no reachable master when they were read back

    @property
    def longest_gaps(self) -> dict[str, float]:
        """shard -> its longest client-seen time without a writable master, in seconds."""
        return {name: s.longest_gap for name, s in self.shards.items()}

    @property
    def exhausted(self) -> list[str]:
        """Shards whose writer stopped at the write bound before the load was stopped."""
        return [name for name, s in self.shards.items() if s.exhausted]


class LoadRun:
    """A bounded write load around any operation, with per-shard numbers at the end.

        with LoadRun(connector, members, replicas_per_master=1) as load:
            ...                      # helm upgrade, kubectl rollout restart, a drill's fault
        load.result.lost_acknowledged, load.result.longest_gaps

    `start()` reads every member's view (the shards and their names), starts one writer per shard (its
    connections time out after `write_timeout` seconds; it keeps one open to each replica of its master)
    and returns self; `stop()` stops the writers, reads every written key back and returns the LoadResult
    (also kept as `result`). Writers are paced (`interval`) and bounded by `max_writes` and `max_seconds`;
    a shard whose writer reached `max_writes` is listed in `result.exhausted` (its gaps after that point
    went unmeasured). Members are reached through `connector` (port-forwards for a release).
    """

    def __init__(
        self,
        connector: Connector,
        members: list[Member],
        replicas_per_master: int = 1,
        max_writes: int = 2_000_000,
        max_seconds: float = 1800.0,
        interval: float = 0.002,
        seeds: list[Member] | None = None,
        wait_timeout_ms: int = 200,
        write_timeout: float = 1.0,
    ) -> None:
        self.connector = connector
        # The writers' own connections: a short timeout, so a frozen master costs the writer no more
        # than that before it looks for the new one.
        self.writer = connector.with_timeout(write_timeout)
        self.members = members
        self.replicas_per_master = replicas_per_master
        self.max_writes = max_writes
        self.max_seconds = max_seconds
        self.interval = interval
        self.seeds = seeds or members
        self.wait_timeout_ms = wait_timeout_ms
        self.load: WriteLoad | None = None
        self.result: LoadResult | None = None

    @classmethod
    def on(cls, target: Any, **options: Any) -> LoadRun:
        """A load on a release (`helm_redis.release.open_release(...)`) or any object with `connector`,
        `members` and `expected` (its replicas per master is what WAIT waits for)."""
        per_master = getattr(target.expected, "replicas_per_master", None)
        options.setdefault("replicas_per_master", 1 if per_master is None else per_master)
        return cls(target.connector, target.members, **options)

    def start(self, views: dict[Member, NodeView] | None = None) -> LoadRun:
        views = views if views is not None else read_views_of(self.connector, self.members)
        shard_of_slot, ranges = shards_of(views)
        if not shard_of_slot:
            raise NodeUnreachable("no master serving slots answered: nothing to write to")
        router = Router(self.writer, [m.address for m in self.seeds])
        self.load = WriteLoad(
            self.writer,
            router,
            shard_of_slot,
            self.replicas_per_master,
            self.max_writes,
            self.max_seconds,
            wait_timeout_ms=self.wait_timeout_ms,
            interval=self.interval,
            slots_of_shard=ranges,
        )
        self.load.start()
        return self

    def stop(self) -> LoadResult:
        if self.load is None:
            raise RuntimeError("LoadRun.stop() before start()")
        load = self.load
        load.finish()
        load.router.refresh()
        lost, unverified = count_missing(self.connector, load, load.acknowledged, per_shard=True)
        lost_unreplicated, unverified_unreplicated = count_missing(self.connector, load, load.unreplicated)
        self.writer.close()
        self.result = LoadResult(
            shards=load.shards,
            acknowledged=len(load.acknowledged),
            unreplicated=len(load.unreplicated),
            failed=load.failed,
            lost_acknowledged=lost,
            lost_unreplicated=lost_unreplicated,
            unverified=unverified + unverified_unreplicated,
        )
        return self.result

    def __enter__(self) -> LoadRun:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        if self.load is not None and self.result is None:
            self.stop()


def count_missing(
    connector: Connector, load: WriteLoad, keys: list[str], per_shard: bool = False
) -> tuple[int, int]:
    """Read every key back from its current master (pipelined per node): (missing, unverifiable).

    A key whose shard has no reachable master (an interrupted drill) is unverifiable, not lost. With
    `per_shard`, each shard's `lost` is set too.
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
                pipe = connector.client(address).pipeline(transaction=False)
                for key in chunk:
                    pipe.get(key)
                values = pipe.execute()
            except redis.RedisError:
                unverifiable += len(chunk)
                continue
            for key, value in zip(chunk, values, strict=True):
                if value != key.rsplit(":", 1)[1]:
                    missing += 1
                    shard = load.shard_of_slot.get(key_slot(key.encode()))
                    if per_shard and shard in load.shards:
                        load.shards[shard].lost += 1
    return missing, unverifiable


def _copy_writes(report: DrillReport, result: LoadResult, progress: Callable[[str], None]) -> None:
    report.shards = result.shards
    report.acknowledged = result.acknowledged
    report.unreplicated = result.unreplicated
    report.failed = result.failed
    report.lost_acknowledged = result.lost_acknowledged
    report.lost_unreplicated = result.lost_unreplicated
    report.unverified = result.unverified
    if report.unverified and not report.interrupted:
        report.problems.append(f"{report.unverified} written key(s) could not be read back (no master)")
    if result.exhausted and not report.interrupted:
        report.problems.append(
            f"the write load reached --max-writes before the end (shards {', '.join(result.exhausted)}): "
            "later gaps went unmeasured; raise --max-writes"
        )
    progress(
        f"writes: {report.acknowledged} acknowledged ({report.lost_acknowledged} lost), "
        f"{report.unreplicated} not acknowledged by every replica ({report.lost_unreplicated} lost), "
        f"{report.failed} failed"
    )


def _judge_writes(report: DrillReport, max_unwritable_seconds: float | None) -> None:
    if report.lost_acknowledged:
        report.problems.append(f"{report.lost_acknowledged} acknowledged write(s) lost")
    if max_unwritable_seconds is None:
        return
    for shard in report.shards.values():
        if shard.longest_gap > max_unwritable_seconds:
            report.problems.append(
                f"shard {shard.name} took no writes for {shard.longest_gap:.2f} s, more than "
                f"--max-unwritable-seconds {max_unwritable_seconds:g}"
            )


@dataclass
class _TargetState:
    """What the drill knows of the target's process: its run ID and when it last answered."""

    run_id: str
    last_answer: float = 0.0


# One look at the target: (seconds since the fault, its view and run ID, or None when it did not answer).
Look = tuple[float, NodeView | None, str | None]


class _TargetProbe(threading.Thread):
    """Looks at the target every `interval` seconds on a connection with a short timeout, in a thread of
    its own, so that a frozen or vanished target never slows down the watch of the other nodes."""

    def __init__(self, connector: Connector, address: NodeAddress, started: float, interval: float = 0.05):
        super().__init__(daemon=True, name=f"probe-{address}")
        self.connector = connector
        self.address = address
        self.started = started
        self.interval = interval
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.looks: list[Look] = []

    def run(self) -> None:
        while not self.stop_event.is_set():
            asked = time.monotonic() - self.started
            try:
                view: NodeView | None = read_view(self.connector, self.address)
                run_id: str | None = str(self.connector.client(self.address).info("server")["run_id"])
            except (NodeUnreachable, redis.RedisError, KeyError):
                view, run_id = None, None
            # An answer is timed by when it came (a frozen node answers when it wakes), silence by
            # when it was asked.
            seen = asked if view is None else time.monotonic() - self.started
            with self.lock:
                self.looks.append((seen, view, run_id))
            # A silent target is asked less often: through a port-forward each try opens a stream.
            self.stop_event.wait(self.interval if view is not None else 4 * self.interval)

    def take(self) -> list[Look]:
        with self.lock:
            looks, self.looks = self.looks, []
        return looks

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=10)


class Drill:
    """A fault drill: `mode` (see MODES) is what `faults` does to the target master."""

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
        max_unwritable_seconds: float | None = None,
    ) -> None:
        if mode not in ("graceful", "restart", "hang", "crash"):
            raise UsageError(f"mode {mode!r}: use graceful, restart, hang or crash")
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
        self.max_unwritable_seconds = max_unwritable_seconds
        self.progress = progress
        # The target is read with a short timeout: a frozen node must not slow the watch down.
        self.quick = connector.with_timeout(1.0)

    def _views(self, members: list[Member]) -> dict[Member, NodeView]:
        return read_views_of(self.connector, members)

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
        try:
            return self._run()
        finally:
            self.quick.close()

    def _run(self) -> DrillReport:
        views = self._views(self.members)
        target = self._choose_target(views)
        target_view = views[target]
        target_id = target_view.node_id
        replicas = [m for m, v in views.items() if v.myself.master_id == target_id]
        report = DrillReport(target=target.name, mode=self.mode)
        self.progress(
            f"target: {target.name} (master of {len(target_view.myself.slots)} slot range(s)), "
            f"replicas: {', '.join(r.name for r in replicas) or 'none'}"
        )
        if not replicas:
            raise UsageError(f"{target.name} has no replica: a failover drill would lose its slots")
        report.node_timeout_seconds = node_timeout_seconds(self.connector, target.address)
        mfstart_before = {r: manual_failovers_sent(views[r]) for r in replicas}
        state = _TargetState(self._run_id(target) or "")

        others = [m for m in self.members if m != target]
        load = LoadRun(
            self.connector,
            self.members,
            self.replicas_per_master,
            self.max_writes,
            self.timeout + 30,
            interval=0.0,
            seeds=others,
        ).start(views)
        started = time.monotonic()
        try:
            time.sleep(0.5)  # a baseline of writes before the fault
            started = time.monotonic()
            report.timeline["fault injected"] = 0.0  # the clock starts as the fault is injected
            state.last_answer = 0.0
            probe = _TargetProbe(self.quick, target.address, started)
            probe.start()
            try:
                self.faults.inject(target, self.mode)
                self.progress(f"{self.mode} of {target.name} injected")
                self._watch(report, target, target_id, replicas, others, started, state, probe)
            finally:
                probe.stop()
            self._prove(report, replicas, mfstart_before)
            time.sleep(0.5)  # writes after recovery
        except KeyboardInterrupt:
            report.interrupted = True
            report.problems.append("interrupted: the drill stopped before the end")
        finally:
            result = load.stop()
        _copy_writes(report, result, self.progress)
        self._describe_outcome(report)
        if self.failback and report.new_master and not report.interrupted:
            self._failback(report, target)
        self._judge(report, target)
        return report

    def _run_id(self, target: Member) -> str | None:
        try:
            return str(self.quick.client(target.address).info("server")["run_id"])
        except (redis.RedisError, KeyError):
            return None

    def _watch(
        self,
        report: DrillReport,
        target: Member,
        target_id: str,
        replicas: list[Member],
        others: list[Member],
        started: float,
        state: _TargetState,
        probe: _TargetProbe,
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
            for look in probe.take():
                self._watch_target(report, target, target_id, replicas, views, promoted, look, state)
            if "replication link up" in mark and "cluster_state ok everywhere" in mark:
                return
            time.sleep(0.05)
        failover = "replica promoted" in mark or self.mode != "restart"
        expected = EVENTS if failover else NO_FAILOVER_EVENTS
        skip = {"failure seen"} if self.mode == "graceful" else set()
        missing = [e for e in expected if e not in mark and e not in skip]
        report.problems.append(f"timed out after {self.timeout:.0f} s waiting for: {', '.join(missing)}")

    def _watch_target(
        self,
        report: DrillReport,
        target: Member,
        target_id: str,
        replicas: list[Member],
        views: dict[Member, NodeView],
        promoted: list[Member],
        look: Look,
        state: _TargetState,
    ) -> None:
        mark = report.timeline
        now, view, run_id = look
        if view is None or run_id is None:
            if "node down" not in mark:
                mark["node down"] = now
                self.progress(f"{target.name} does not answer after {now:.2f} s")
            return
        if "node down" not in mark:
            if run_id == state.run_id:
                state.last_answer = now
                return  # still the old process (a graceful stop hands over before it exits)
            # A new process answers, and we never saw the old one gone: it was down in between.
            mark["node down"] = state.last_answer
            self.progress(f"{target.name} restarted between two looks (after {state.last_answer:.2f} s)")
        if "node back" not in mark:
            mark["node back"] = now
            if view.node_id != target_id:
                report.problems.append(
                    f"{target.name} came back with a new node ID {view.node_id[:8]} (was {target_id[:8]}): "
                    "nodes.conf was not kept on its volume"
                )
                return
            self.progress(f"{target.name} answers again after {now:.2f} s (same node ID)")
        if view.node_id != target_id:
            return
        if promoted:
            new_master_id = views[promoted[0]].node_id
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
            return
        # No replica took over. Settled once the master serves its slots again, no node holds it as
        # failing (so no election can start any more) and every replica follows it again.
        if not (view.myself.is_master and view.myself.slots and view.state_ok):
            return
        if any(n.node_id == target_id and n.is_failing for v in views.values() for n in v.nodes):
            return
        following = [
            r
            for r in replicas
            if r in views
            and views[r].myself.master_id == target_id
            and views[r].replication.get("master_link_status") == "up"
        ]
        if len(following) < len(replicas) or not all(v.state_ok for v in views.values()):
            return
        mark["returned as master"] = now
        mark["replication link up"] = now
        mark["cluster_state ok everywhere"] = now
        self.progress(f"{target.name} is master again and its replicas follow it after {now:.2f} s")

    def _prove(self, report: DrillReport, replicas: list[Member], before: dict[Member, int]) -> None:
        """Count the manual failovers the target's replicas started during the drill."""
        total = 0
        for replica in replicas:
            try:
                sent = manual_failovers_sent(read_view(self.connector, replica.address))
            except NodeUnreachable as error:
                report.problems.append(
                    f"cannot prove the fault: {MFSTART_SENT} of {replica.name} unreadable ({error})"
                )
                return
            if sent < before[replica]:
                report.problems.append(
                    f"cannot prove the fault: {replica.name} restarted during the drill (its {MFSTART_SENT} "
                    "went back)"
                )
                return
            total += sent - before[replica]
        report.manual_failovers = total
        self.progress(f"manual failovers started by the replicas of {report.target}: {total}")

    def _describe_outcome(self, report: DrillReport) -> None:
        mark = report.timeline
        if report.new_master and report.manual_failovers:
            report.outcome = f"handed over to {report.new_master} (manual failover)"
        elif report.new_master and self.mode == "restart":
            report.outcome = f"replica promoted: {report.new_master} took over"
        elif report.new_master:
            report.outcome = f"unplanned failover: {report.new_master} promoted by election"
        elif "returned as master" in mark:
            report.outcome = "returned as master within the node timeout: no failover"

    def _failback(self, report: DrillReport, target: Member) -> None:
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

    def _judge(self, report: DrillReport, target: Member) -> None:
        _judge_writes(report, self.max_unwritable_seconds)
        manual = report.manual_failovers
        if not report.interrupted and manual is not None:
            if self.mode == "graceful" and manual == 0:
                report.problems.append(
                    "no handover: the preStop did not hand over (no replica of "
                    f"{target.name} started a manual failover)"
                )
            if self.mode != "graceful" and manual > 0:
                report.problems.append(
                    f"invalid drill: {manual} manual failover(s) (CLUSTER FAILOVER) by the replicas of "
                    f"{target.name}: the promotion was a planned handover, not the {self.mode} this drill "
                    "claims to measure"
                )
        if (
            self.mode in ("hang", "crash")
            and not report.interrupted
            and not report.new_master
            and "returned as master" in report.timeline
        ):
            report.problems.append(
                f"no failover: {target.name} was master again before any replica took over (the fault "
                "lasted less than the node timeout)"
            )
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


class RolloutDrill:
    """Every node restarted in turn by `rollout`, under write load, until the rollout is complete and the
    cluster passes every done-check. Reports every handover (time, shard, old -> new master) and per
    shard the longest time without a writable master and acknowledged writes lost."""

    def __init__(
        self,
        connector: Connector,
        members: list[Member],
        expected: Expectation,
        rollout: Rollout,
        timeout: float = 900.0,
        max_writes: int = 2_000_000,
        max_unwritable_seconds: float | None = None,
        progress: Callable[[str], None] = lambda _m: None,
        interval: float = 0.002,
    ) -> None:
        self.connector = connector
        self.members = members
        self.expected = expected
        self.rollout = rollout
        self.timeout = timeout
        self.max_writes = max_writes
        self.max_unwritable_seconds = max_unwritable_seconds
        self.progress = progress
        self.interval = interval
        self.quick = connector.with_timeout(1.0)

    def run(self) -> DrillReport:
        try:
            return self._run()
        finally:
            self.quick.close()

    def _run(self) -> DrillReport:
        views = read_views_of(self.connector, self.members)
        report = DrillReport(target=self.rollout.name, mode="rollout")
        per_master = self.expected.replicas_per_master
        load = LoadRun(
            self.connector,
            self.members,
            1 if per_master is None else per_master,
            self.max_writes,
            self.timeout + 30,
            interval=self.interval,
        ).start(views)
        try:
            time.sleep(0.5)  # a baseline of writes before the rollout
            self._watch(report, views)
            time.sleep(0.5)  # writes after the rollout
        except KeyboardInterrupt:
            report.interrupted = True
            report.problems.append("interrupted: the drill stopped before the end")
        finally:
            result = load.stop()
        _copy_writes(report, result, self.progress)
        handed = len(report.handovers)
        report.outcome = (
            f"rollout {'complete' if 'rollout complete' in report.timeline else 'NOT complete'}, "
            f"{handed} handover(s)"
        )
        _judge_writes(report, self.max_unwritable_seconds)
        return report

    def _watch(self, report: DrillReport, views: dict[Member, NodeView]) -> None:
        mark = report.timeline
        name_of = {v.node_id: m.name for m, v in views.items()}
        owners = {
            m.name: (v.myself.slots[0][0], m.name)
            for m, v in views.items()
            if v.myself.is_master and v.myself.slots
        }
        started = time.monotonic()
        self.rollout.start()
        mark["rollout started"] = 0.0
        self.progress(f"rolling restart of {self.rollout.name} started")
        deadline = started + self.timeout
        status = RolloutStatus(False, "not read yet")
        last_status_read = -10.0
        last_detail = ""
        unhealthy: list[str] = ["not checked yet"]
        while time.monotonic() < deadline:
            now = time.monotonic() - started
            current = read_views_of(self.quick, self.members)
            name_of.update({v.node_id: m.name for m, v in current.items()})
            for shard, (slot, owner) in list(owners.items()):
                claimants = [
                    v
                    for v in current.values()
                    if v.myself.is_master and any(a <= slot <= b for a, b in v.myself.slots)
                ]
                if not claimants:
                    continue
                newest = max(claimants, key=lambda v: v.myself.config_epoch)
                new_owner = name_of.get(newest.node_id, newest.address)
                if new_owner != owner:
                    report.handovers.append(Handover(now, shard, owner, new_owner))
                    owners[shard] = (slot, new_owner)
                    self.progress(f"shard {shard}: {owner} -> {new_owner} after {now:.2f} s")
            if now - last_status_read >= 1.0:
                status = self.rollout.status()
                last_status_read = now
                if status.detail != last_detail:
                    self.progress(f"rollout: {status.detail}")
                    last_detail = status.detail
            if status.complete and "rollout complete" not in mark:
                mark["rollout complete"] = now
                self.progress(f"rollout complete after {now:.2f} s")
            if status.complete and len(current) == len(self.members):
                checks = failed(assess(list(current.values()), self.expected), DONE_CHECKS)
                unhealthy = [f"{c.name}: {c.detail}" for c in checks]
                if not checks:
                    mark["cluster healthy"] = now
                    self.progress(f"cluster healthy (every done-check passes) after {now:.2f} s")
                    report.rollout = status.detail
                    return
            elif status.complete:
                unhealthy = [f"{len(self.members) - len(current)} node(s) do not answer"]
            time.sleep(0.2)
        report.rollout = status.detail
        if not status.complete:
            report.problems.append(
                f"the rollout did not complete within {self.timeout:.0f} s: {status.detail}"
            )
        else:
            report.problems.append(
                f"the cluster was not healthy within {self.timeout:.0f} s after the rollout: "
                + "; ".join(unhealthy)
            )
