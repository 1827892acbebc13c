"""Who is master, who replicates whom, which slots go where: pure functions, no I/O.

Replicas are kept off their master's Kubernetes node whenever the nodes allow it (a maximum bipartite
matching of replica seats to candidates, over the master choices worth trying), and masters are spread
over Kubernetes nodes.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from dataclasses import dataclass, field

from .clusterview import TOTAL_SLOTS, SlotRange
from .nodes import NodeAddress


@dataclass(frozen=True)
class Member:
    """A node to place: how to reach it, what to call it, and where it runs."""

    address: NodeAddress
    name: str
    k8s_node: str | None = None
    ordinal: int = 0


@dataclass
class Assignment:
    """New roles for free members: masters to add, and replica -> master pairs."""

    masters: list[Member] = field(default_factory=list)
    replicas: list[tuple[Member, Member]] = field(default_factory=list)


def slot_ranges(masters: int) -> list[SlotRange]:
    """Even contiguous ranges, the last master taking the remainder (redis-cli's split)."""
    if masters < 1:
        raise ValueError("at least one master is needed")
    per_master = TOTAL_SLOTS / masters
    ranges: list[SlotRange] = []
    first = 0
    cursor = 0.0
    for index in range(masters):
        last = round(cursor + per_master - 1)
        if last > TOTAL_SLOTS - 1 or index == masters - 1:
            last = TOTAL_SLOTS - 1
        ranges.append((first, last))
        first = last + 1
        cursor += per_master
    return ranges


def slot_targets(masters: list[Member]) -> dict[Member, int]:
    """How many slots each master should own after a rebalance (the remainder to the first ones)."""
    base, extra = divmod(TOTAL_SLOTS, len(masters))
    ordered = sorted(masters, key=lambda m: m.ordinal)
    return {member: base + (1 if index < extra else 0) for index, member in enumerate(ordered)}


def _shares_node(a: Member, b: Member) -> bool:
    return a.k8s_node is not None and a.k8s_node == b.k8s_node


def _spread_masters(existing: list[Member], free: list[Member], count: int) -> list[Member]:
    """Pick `count` new masters from `free`, each from the k8s node that has the fewest masters."""
    per_node = Counter(m.k8s_node for m in existing)
    chosen: list[Member] = []
    pool = sorted(free, key=lambda m: m.ordinal)
    for _ in range(count):
        best = min(pool, key=lambda m: (per_node[m.k8s_node] if m.k8s_node else 0, m.ordinal))
        chosen.append(best)
        per_node[best.k8s_node] += 1
        pool.remove(best)
    return chosen


def _match_seats(
    seats: list[Member], candidates: list[Member], taken: dict[Member, list[Member]]
) -> list[tuple[Member, Member]]:
    """Fill replica seats (one entry per missing replica of a master) from candidates.

    Maximum matching on the edges 'candidate not on the seat master's k8s node' (Kuhn's algorithm,
    candidates tried in preference order), then the unmatched seats take what is left.
    """
    owner: dict[Member, int] = {}  # candidate -> seat index

    def preference(seat_master: Member) -> list[Member]:
        others = {r.k8s_node for r in taken.get(seat_master, [])}
        return sorted(
            (c for c in candidates if not _shares_node(c, seat_master)),
            key=lambda c: (c.k8s_node is not None and c.k8s_node in others, c.ordinal),
        )

    def augment(seat: int, visited: set[Member]) -> bool:
        choices = preference(seats[seat])
        # A free candidate first (keeps the natural pod order), then an augmenting path.
        for candidate in choices:
            if candidate not in owner:
                owner[candidate] = seat
                return True
        for candidate in choices:
            if candidate in visited:
                continue
            visited.add(candidate)
            if augment(owner[candidate], visited):
                owner[candidate] = seat
                return True
        return False

    for seat in range(len(seats)):
        augment(seat, set())
    matched = {seat: candidate for candidate, seat in owner.items()}
    leftovers = sorted((c for c in candidates if c not in owner), key=lambda c: c.ordinal)
    pairs: list[tuple[Member, Member]] = []
    for seat, master in enumerate(seats):
        replica = matched.get(seat) or (leftovers.pop(0) if leftovers else None)
        if replica is not None:
            pairs.append((replica, master))
    return pairs


def _fill_replicas(
    masters: list[Member],
    existing_replicas: dict[Member, list[Member]],
    free: list[Member],
    per_master: int,
) -> list[tuple[Member, Member]]:
    ordered = sorted(masters, key=lambda m: m.ordinal)
    seats = [
        master
        for round_ in range(per_master)
        for master in ordered
        if len(existing_replicas.get(master, [])) <= round_
    ]
    pairs = _match_seats(seats, free, existing_replicas)
    # Members beyond the seats still serve: as extra replicas of the least covered masters.
    placed = {replica for replica, _ in pairs}
    counts = Counter({m: len(existing_replicas.get(m, [])) for m in ordered})
    counts.update(master for _, master in pairs)
    for extra in sorted((m for m in free if m not in placed), key=lambda m: m.ordinal):
        master = min(ordered, key=lambda m: (_shares_node(extra, m), counts[m], m.ordinal))
        pairs.append((extra, master))
        counts[master] += 1
    return pairs


def colocated(pairs: list[tuple[Member, Member]]) -> list[tuple[Member, Member]]:
    return [(replica, master) for replica, master in pairs if _shares_node(replica, master)]


def assign_roles(
    masters: list[Member],
    replicas: dict[Member, list[Member]],
    free: list[Member],
    masters_wanted: int,
    replicas_per_master: int,
) -> Assignment:
    """Roles for `free` members, given the masters and replicas that already exist.

    Serves both a fresh formation (no masters yet) and a scale-out (new empty members).
    """
    new_count = max(0, masters_wanted - len(masters))
    if new_count > len(free):
        raise ValueError(f"{masters_wanted} masters wanted but only {len(masters) + len(free)} nodes")
    if new_count == 0:
        return Assignment([], _fill_replicas(masters, replicas, free, replicas_per_master))

    options = [_spread_masters(masters, free, new_count)]
    # Small sets: also try every other choice of masters and keep the one with the fewest colocations.
    if any(m.k8s_node for m in free) and math.comb(len(free), new_count) <= 500:
        options += [list(c) for c in itertools.combinations(sorted(free, key=lambda m: m.ordinal), new_count)]
    best: Assignment | None = None
    best_score: tuple[int, int] | None = None
    for chosen in options:
        rest = [m for m in free if m not in chosen]
        pairs = _fill_replicas(masters + chosen, replicas, rest, replicas_per_master)
        all_masters = masters + chosen
        spread = max(Counter(m.k8s_node for m in all_masters).values())
        score = (len(colocated(pairs)), spread)
        if best_score is None or score < best_score:
            best, best_score = Assignment(sorted(chosen, key=lambda m: m.ordinal), pairs), score
    assert best is not None
    return best
