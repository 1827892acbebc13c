"""The formation plan: slot ranges and replica placement over Kubernetes nodes (pure functions)."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from helm_redis.nodes import NodeAddress
from helm_redis.plan import Member, assign_roles, colocated, slot_ranges, slot_targets


def members(k8s_nodes: list[str | None]) -> list[Member]:
    return [
        Member(NodeAddress(f"10.0.0.{i}", 6379), f"redis-{i}", node, i) for i, node in enumerate(k8s_nodes)
    ]


def test_three_masters_get_the_redis_cli_ranges():
    assert slot_ranges(3) == [(0, 5460), (5461, 10922), (10923, 16383)]


@pytest.mark.parametrize("masters", [1, 3, 4, 5, 7, 10, 60])
def test_slot_ranges_cover_every_slot_once_and_evenly(masters):
    ranges = slot_ranges(masters)
    sizes = [end - start + 1 for start, end in ranges]
    assert ranges[0][0] == 0 and ranges[-1][1] == 16383
    assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(ranges))
    assert max(sizes) - min(sizes) <= 1


def test_slot_targets_sum_to_16384():
    assert sum(slot_targets(members([None] * 7)).values()) == 16384


def test_without_topology_pods_0_to_2_are_masters_and_3_to_5_replicate_them_in_order():
    pods = members([None] * 6)
    plan = assign_roles([], {}, pods, 3, 1)
    assert [m.name for m in plan.masters] == ["redis-0", "redis-1", "redis-2"]
    assert [(r.name, m.name) for r, m in plan.replicas] == [
        ("redis-3", "redis-0"),
        ("redis-4", "redis-1"),
        ("redis-5", "redis-2"),
    ]


@pytest.mark.parametrize(
    "layout",
    [
        ["a", "b", "c", "a", "b", "c"],  # 3 masters + 3 replicas over 3 k8s nodes, round-robin
        ["a", "a", "b", "b", "c", "c"],  # ... packed in pairs
        ["a", "b", "a", "b", "a", "b"],  # over 2 k8s nodes
        ["a", "a", "a", "b", "b", "b"],  # over 2 k8s nodes, packed
    ],
)
def test_no_replica_shares_a_k8s_node_with_its_master_when_possible(layout):
    plan = assign_roles([], {}, members(layout), 3, 1)
    assert len(plan.masters) == 3
    assert colocated(plan.replicas) == []


def test_masters_are_spread_over_k8s_nodes():
    plan = assign_roles([], {}, members(["a", "a", "b", "b", "c", "c"]), 3, 1)
    assert sorted(m.k8s_node for m in plan.masters) == ["a", "b", "c"]


def test_two_replicas_per_master_over_three_nodes_never_share_their_masters_node():
    plan = assign_roles([], {}, members(["a", "b", "c"] * 3), 3, 2)
    assert colocated(plan.replicas) == []
    assert Counter(m.name for _, m in plan.replicas) == Counter({m.name: 2 for m in plan.masters})


def test_one_k8s_node_makes_colocation_unavoidable_but_the_plan_is_complete():
    plan = assign_roles([], {}, members(["only"] * 6), 3, 1)
    assert len(plan.replicas) == 3
    assert len(colocated(plan.replicas)) == 3


def test_scale_out_adds_a_master_and_a_replica_for_it_away_from_it():
    pods = members(["a", "b", "c", "a", "b", "c", "a", "b"])
    masters, replicas = pods[:3], {pods[0]: [pods[3]], pods[1]: [pods[4]], pods[2]: [pods[5]]}
    plan = assign_roles(masters, replicas, pods[6:], 4, 1)
    assert len(plan.masters) == 1
    ((new_replica, its_master),) = plan.replicas
    assert its_master == plan.masters[0]
    assert new_replica.k8s_node != its_master.k8s_node


def test_too_few_nodes_for_the_masters_is_an_error():
    with pytest.raises(ValueError, match="4 masters wanted"):
        assign_roles([], {}, members([None] * 3), 4, 0)


def test_nodes_beyond_the_replica_seats_become_extra_replicas():
    plan = assign_roles([], {}, members([None] * 7), 3, 1)
    assert len(plan.replicas) == 4
