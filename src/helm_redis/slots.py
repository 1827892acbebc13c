"""Moving hash slots between masters with their keys.

Two strategies, chosen per call by `move_slots`:
- atomic (atomic_slots.py): Valkey's CLUSTER MIGRATESLOTS, when every node runs Valkey >= 9.0; the server
  moves whole slots itself, clients see no ASK redirections. A job that fails while the source keeps its
  slots (an ACL that does not let the replication user import, for one) falls back to the next strategy.
- key by key: IMPORTING/MIGRATING, MIGRATE batches, SETSLOT NODE, on every engine. Slots move in
  batches, one pipeline per node and step, so thousands of slots take seconds even through
  port-forwards. A move interrupted anywhere leaves the slot open on the nodes; formation finds it there
  and moves it again, which is safe: every step may be repeated. Open slots always finish this way
  (Valkey refuses MIGRATESLOTS while any slot of the node is open).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import groupby

from .atomic_slots import atomic_support, move_atomic
from .clusterview import NodeView, SlotRange
from .errors import UsageError
from .nodes import Connector, resolve_host
from .plan import Member, slot_targets

AUTO, ATOMIC, KEYS = "auto", "atomic", "keys"
STRATEGIES = (AUTO, ATOMIC, KEYS)
BATCH = 256
KEYS_PER_MIGRATE = 500
MIGRATE_TIMEOUT_MS = 10_000


@dataclass(frozen=True)
class SlotMove:
    slot: int
    source: Member
    target: Member


def plan_rebalance(
    counts: dict[Member, int], owned: dict[Member, tuple[SlotRange, ...]], tolerance: float = 0.02
) -> list[SlotMove]:
    """Moves that bring every master to its even share; none when all are within `tolerance`."""
    if len(counts) < 2:
        return []
    targets = slot_targets(list(counts))
    if all(counts[m] >= targets[m] * (1 - tolerance) for m in counts):
        return []
    surplus: list[tuple[int, Member]] = []
    for donor in sorted(counts, key=lambda m: m.ordinal):
        extra = counts[donor] - targets[donor]
        if extra > 0:
            slots = [s for start, end in owned[donor] for s in range(start, end + 1)]
            surplus += [(slot, donor) for slot in sorted(slots)[-extra:]]
    moves: list[SlotMove] = []
    for receiver in sorted(counts, key=lambda m: m.ordinal):
        need = targets[receiver] - counts[receiver]
        while need > 0 and surplus:
            slot, donor = surplus.pop(0)
            moves.append(SlotMove(slot, donor, receiver))
            need -= 1
    return moves


def _endpoint(member: Member, view: NodeView) -> tuple[str, int]:
    me = view.myself
    return (me.ip or resolve_host(member.address.host), me.port or member.address.port)


def move_slots(
    connector: Connector,
    views: dict[Member, NodeView],
    moves: list[SlotMove],
    progress: Callable[[str], None] = lambda _msg: None,
    strategy: str = AUTO,
) -> int:
    """Move every slot with its keys; returns how many keys moved. `auto`: atomic slot migration when
    every node supports it, else key by key; `atomic` insists (UsageError when a node lacks it);
    `keys` is key by key whatever the engines."""
    if strategy not in STRATEGIES:
        raise ValueError(f"slot move strategy {strategy!r} is not one of {', '.join(STRATEGIES)}")
    if not moves or strategy == KEYS:
        return move_slots_by_keys(connector, views, moves, progress)
    supported, why_not = atomic_support(connector, list(views))
    if not supported:
        if strategy == ATOMIC:
            raise UsageError(f"atomic slot migration needs Valkey >= 9.0 on every node: {why_not}")
        progress(f"moving slots key by key (MIGRATE): {why_not}, atomic slot migration needs Valkey >= 9.0")
        return move_slots_by_keys(connector, views, moves, progress)
    # Slots left open (IMPORTING/MIGRATING) finish key by key: MIGRATESLOTS is refused while any is.
    open_slots = {slot for view in views.values() for slot in view.open_slots()}
    moved = move_slots_by_keys(connector, views, [mv for mv in moves if mv.slot in open_slots], progress)
    groups: dict[tuple[Member, Member], list[int]] = {}
    for mv in moves:
        if mv.slot not in open_slots:
            groups.setdefault((mv.source, mv.target), []).append(mv.slot)
    if not groups:
        return moved
    ids = {member: view.node_id for member, view in views.items()}
    atomic_keys, fallback = move_atomic(connector, ids, list(views), groups, progress)
    rest = [SlotMove(slot, source, target) for (source, target), slots in fallback.items() for slot in slots]
    return moved + atomic_keys + move_slots_by_keys(connector, views, rest, progress)


def move_slots_by_keys(
    connector: Connector,
    views: dict[Member, NodeView],
    moves: list[SlotMove],
    progress: Callable[[str], None] = lambda _msg: None,
) -> int:
    """Move every slot with its keys by MIGRATE (any engine); returns how many keys moved."""
    ids = {member: view.node_id for member, view in views.items()}
    masters = [m for m, v in views.items() if v.myself.is_master]
    moved_keys = 0
    done = 0
    ordered = sorted(moves, key=lambda mv: (mv.source.ordinal, mv.target.ordinal, mv.slot))
    for (source, target), group in groupby(ordered, key=lambda mv: (mv.source, mv.target)):
        slots = [mv.slot for mv in group]
        for start in range(0, len(slots), BATCH):
            batch = slots[start : start + BATCH]
            moved_keys += _move_batch(connector, views, ids, masters, source, target, batch)
            done += len(batch)
            progress(f"moved {done}/{len(moves)} slots ({moved_keys} keys)")
    return moved_keys


def _pipeline_each(connector: Connector, member: Member, commands: list[tuple[object, ...]]) -> list[object]:
    pipe = connector.client(member.address).pipeline(transaction=False)
    for command in commands:
        pipe.execute_command(*command)
    return pipe.execute(raise_on_error=False)


def _move_batch(
    connector: Connector,
    views: dict[Member, NodeView],
    ids: dict[Member, str],
    masters: list[Member],
    source: Member,
    target: Member,
    batch: list[int],
) -> int:
    source_id, target_id = ids[source], ids[target]
    # A re-run may find a slot half switched already: the owner checks below then just pass.
    importing = [("CLUSTER", "SETSLOT", s, "IMPORTING", source_id) for s in batch]
    _raise_first(_pipeline_each(connector, target, importing), tolerate="already the owner")
    migrating = [("CLUSTER", "SETSLOT", s, "MIGRATING", target_id) for s in batch]
    _raise_first(_pipeline_each(connector, source, migrating), tolerate="not the owner")
    host, port = _endpoint(target, views[target])
    user, password = connector.login(target.address)
    auth = ["AUTH2", user, password] if user else ["AUTH", password] if password else []
    source_client = connector.client(source.address)
    moved = 0
    pending = list(batch)
    while pending:
        keys_per_slot = _pipeline_each(
            connector, source, [("CLUSTER", "GETKEYSINSLOT", s, KEYS_PER_MIGRATE) for s in pending]
        )
        _raise_first(keys_per_slot)
        still = []
        for slot, keys in zip(pending, keys_per_slot, strict=True):
            if keys:
                source_client.execute_command(
                    "MIGRATE", host, port, "", 0, MIGRATE_TIMEOUT_MS, *auth, "KEYS", *keys
                )
                moved += len(keys)
                still.append(slot)
        pending = still
    # The target first, then the source (which stops redirecting), then every other master. A master
    # that gave away its last slot turns into a replica of the receiver (Redis 7 with
    # cluster-allow-replica-migration), and then refuses SETSLOT; it needs none any more (as redis-cli).
    setslot = [("CLUSTER", "SETSLOT", s, "NODE", target_id) for s in batch]
    _raise_first(_pipeline_each(connector, target, setslot))
    for member in [source] + [m for m in masters if m not in (source, target)]:
        _raise_first(_pipeline_each(connector, member, setslot), tolerate="only with masters")
    return moved


def _raise_first(results: list[object], tolerate: str | None = None) -> None:
    for result in results:
        if isinstance(result, Exception) and not (tolerate and tolerate in str(result)):
            raise result


def plan_drain(
    owned: dict[Member, tuple[SlotRange, ...]], sources: list[Member], receivers: list[Member]
) -> list[SlotMove]:
    """Moves that empty `sources` into `receivers`, each receiver filled towards its even share in
    pod order with consecutive slots (so its ranges stay few)."""
    if not receivers:
        raise ValueError("a drain needs at least one receiving master")
    ordered = sorted(receivers, key=lambda m: m.ordinal)
    targets = slot_targets(ordered)
    need = {r: targets[r] - sum(end - start + 1 for start, end in owned.get(r, ())) for r in ordered}
    pending = sorted(
        (slot, source)
        for source in sources
        for start, end in owned.get(source, ())
        for slot in range(start, end + 1)
    )
    moves: list[SlotMove] = []
    for receiver in ordered:
        while need[receiver] > 0 and pending:
            slot, source = pending.pop(0)
            moves.append(SlotMove(slot, source, receiver))
            need[receiver] -= 1
    # Receivers already above their share (an uneven cluster): the rest to the emptiest ones.
    for slot, source in pending:
        receiver = max(ordered, key=lambda r: (need[r], -r.ordinal))
        moves.append(SlotMove(slot, source, receiver))
        need[receiver] -= 1
    return moves
