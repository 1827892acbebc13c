"""Which slots a scale-in moves where: pure planning, no Redis."""

from __future__ import annotations

from collections import Counter

import pytest

from helm_redis.clusterview import TOTAL_SLOTS, compress_slots
from helm_redis.nodes import NodeAddress
from helm_redis.plan import Member, slot_ranges
from helm_redis.slots import plan_drain


def _members(count: int) -> list[Member]:
    return [Member(NodeAddress(f"10.0.0.{i}", 6379), f"redis-{i}", None, i) for i in range(count)]


def test_a_leaving_master_of_four_is_shared_evenly_by_the_three_that_stay():
    members = _members(4)
    owned = {m: (r,) for m, r in zip(members, slot_ranges(4), strict=True)}

    moves = plan_drain(owned, [members[3]], members[:3])

    assert {mv.source for mv in moves} == {members[3]}
    assert len(moves) == 4096
    after = Counter({m: 4096 for m in members[:3]})
    after.update(mv.target for mv in moves)
    assert sorted(after.values()) == [5461, 5461, 5462]


def test_each_receiver_gets_consecutive_slots():
    members = _members(4)
    owned = {m: (r,) for m, r in zip(members, slot_ranges(4), strict=True)}

    moves = plan_drain(owned, [members[3]], members[:3])

    for receiver in members[:3]:
        received = [mv.slot for mv in moves if mv.target is receiver]
        assert len(compress_slots(received)) == 1, receiver.name


def test_a_surplus_master_among_the_staying_pods_is_drained_too():
    members = _members(5)
    owned = {m: (r,) for m, r in zip(members, slot_ranges(5), strict=True)}

    moves = plan_drain(owned, [members[3], members[4]], members[:3])

    moved = Counter(mv.source for mv in moves)
    assert moved == {
        members[3]: owned[members[3]][0][1] - owned[members[3]][0][0] + 1,
        members[4]: owned[members[4]][0][1] - owned[members[4]][0][0] + 1,
    }
    total = Counter({m: owned[m][0][1] - owned[m][0][0] + 1 for m in members[:3]})
    total.update(mv.target for mv in moves)
    assert sum(total.values()) == TOTAL_SLOTS
    assert max(total.values()) - min(total.values()) <= 1


def test_an_uneven_cluster_still_moves_every_slot_of_the_leaving_master():
    members = _members(4)
    owned = {
        members[0]: ((0, 8000),),
        members[1]: ((8001, 12000),),
        members[2]: ((12001, 15000),),
        members[3]: ((15001, 16383),),
    }

    moves = plan_drain(owned, [members[3]], members[:3])

    assert sorted(mv.slot for mv in moves) == list(range(15001, 16384))
    assert not any(mv.target is members[0] for mv in moves), "the fullest master gets nothing more"


def test_a_drain_without_receivers_is_a_planning_error():
    members = _members(3)
    with pytest.raises(ValueError, match="at least one receiving master"):
        plan_drain({members[0]: ((0, 16383),)}, [members[0]], [])
