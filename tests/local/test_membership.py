"""Membership on real local nodes: scale-in drains before pods go, departed IDs are forgotten, a node that
comes back with an empty volume takes its predecessor's place, a shard that lost every copy is refused
unless the loss is accepted explicitly."""

from __future__ import annotations

import shutil

import pytest

from helm_redis.errors import PlanError, ShardLost
from helm_redis.formation import Formation, members_from_addresses
from helm_redis.health import Expectation, assess
from helm_redis.nodes import Connector
from helm_redis.nodesconf import set_aside_if_forgotten
from helm_redis.reconcile import Reconciler
from helm_redis.scalein import ScaleIn

from .helpers import assert_complete, fingerprint, form, read_back, views_of, wait_for, write_keys


def _scale_in(nodes, masters: int, replicas: int, **kw):
    return ScaleIn(
        Connector(), members_from_addresses(nodes.addresses), masters, replicas, timeout=120, **kw
    ).run()


def _remove_leaving(nodes, keep: int) -> None:
    """What the StatefulSet does after the pre-upgrade hook: the highest ordinals stop for good."""
    for node in nodes.nodes[keep:]:
        node.stop(kill=True)
    nodes.nodes = nodes.nodes[:keep]


def _lose_volume(node) -> None:
    """A pod that comes back on an empty disk: same address, no nodes.conf, no data."""
    node.stop(kill=True)
    shutil.rmtree(node.directory)
    node.start()
    node.wait_ready()


def _heal(nodes, masters: int, replicas: int, timeout: float = 60) -> str:
    reconciler = Reconciler(
        Connector(), members_from_addresses(nodes.addresses), masters, replicas, log=print
    )
    return wait_for(
        lambda: (outcome := reconciler.step()).startswith("healed") and outcome,
        timeout,
        interval=0.2,
        what="the reconciler to heal the cluster",
    )


def _slots(ranges) -> set[int]:
    return {slot for start, end in ranges for slot in range(start, end + 1)}


def _listed_ids(nodes) -> set[str]:
    return {n.node_id for v in views_of(nodes) for n in v.nodes}


def test_scale_in_from_4_to_3_masters_drains_a_remaining_master_and_keeps_every_key(make_nodes):
    nodes = make_nodes(8)
    form(nodes, 4, 1, timeout=60)  # masters are pods 0-3; pods 6 and 7 (leaving) are replicas
    data = write_keys(nodes, 2000)

    result = _scale_in(nodes, 3, 1)

    assert result.leaving == [str(a) for a in nodes.addresses[6:]]
    assert result.moved_slots == 4096 and result.moved_keys > 0
    views = {v.address: v for v in views_of(nodes)}
    staying = [views[str(a)] for a in nodes.addresses[:6]]
    assert sorted(v.myself.slot_count for v in staying if v.myself.slots) == [5461, 5461, 5462]
    assert not any(views[str(a)].myself.slots for a in nodes.addresses[6:])
    masters = {v.node_id for v in staying if v.myself.slots}
    followers = [v for v in staying if v.myself.is_replica]
    assert sorted(v.myself.master_id for v in followers) == sorted(masters)
    assert all(v.replication["master_link_status"] == "up" for v in followers)

    departed = {views[str(a)].node_id for a in nodes.addresses[6:]}
    _remove_leaving(nodes, 6)
    after = form(nodes, 3, 1, timeout=60)

    assert len(after.forgotten) == 2
    assert_complete(nodes, 3, 1)
    assert not departed & _listed_ids(nodes)
    assert read_back(nodes, data) == {}


def test_scale_in_after_a_scale_out_drains_the_leaving_master(make_nodes):
    nodes = make_nodes(6)
    form(nodes, 3, 1, timeout=60)
    nodes.nodes += make_nodes(2).nodes
    form(nodes, 4, 1, timeout=120)  # the new master is pod 6, its replica pod 7
    data = write_keys(nodes, 2000)
    before = {v.address: v.myself.slots for v in views_of(nodes)}

    result = _scale_in(nodes, 3, 1)

    assert result.moved_slots == 4096
    after = {v.address: v.myself.slots for v in views_of(nodes)}
    assert not after[str(nodes.addresses[6])]
    kept = [a for a in before if before[a] and a != str(nodes.addresses[6])]
    assert all(_slots(before[a]) <= _slots(after[a]) for a in kept), "a remaining master lost slots"
    _remove_leaving(nodes, 6)
    form(nodes, 3, 1, timeout=60)
    assert_complete(nodes, 3, 1)
    assert read_back(nodes, data) == {}


def test_scale_in_before_a_scale_out_has_nothing_to_do(make_nodes):
    nodes = make_nodes(6)
    form(nodes, 3, 1, timeout=60)
    before = fingerprint(nodes)

    result = _scale_in(nodes, 4, 1)  # the pre-upgrade hook of a scale-out: 6 pods run, 8 wanted

    assert result.leaving == [] and result.actions == []
    assert fingerprint(nodes) == before


def test_pods_back_on_volumes_kept_after_a_scale_in_start_empty_and_serve_a_scale_out(make_nodes):
    nodes = make_nodes(8)
    form(nodes, 4, 1, timeout=60)
    data = write_keys(nodes, 1000)
    _scale_in(nodes, 3, 1)
    returning = nodes.nodes[6:]
    _remove_leaving(nodes, 6)
    form(nodes, 3, 1, timeout=60)  # the post-upgrade hook forgets pods 6 and 7

    for node in returning:  # a scale-out brings them back on their kept volumes; the start step runs
        assert set_aside_if_forgotten(node.nodes_conf, node.nodes_conf.read_text(), Connector(), print)
        assert not node.nodes_conf.exists()
        assert list(node.directory.glob("departed-*/nodes.conf"))
        node.start()
        node.wait_ready()
    nodes.nodes += returning
    form(nodes, 4, 1, timeout=120)

    assert_complete(nodes, 4, 1)
    assert read_back(nodes, data) == {}


def test_the_start_step_keeps_the_files_of_a_node_the_cluster_knows(cluster):
    replica = next(n for n in cluster.nodes if views_of(cluster)[cluster.nodes.index(n)].myself.is_replica)
    master = next(n for n in cluster.nodes if views_of(cluster)[cluster.nodes.index(n)].myself.slots)

    for node in (replica, master):
        assert not set_aside_if_forgotten(node.nodes_conf, node.nodes_conf.read_text(), Connector(), print)
        assert node.nodes_conf.exists()


def test_a_second_scale_in_run_changes_nothing(make_nodes):
    nodes = make_nodes(8)
    form(nodes, 4, 1, timeout=60)
    _scale_in(nodes, 3, 1)
    before = fingerprint(nodes)

    again = _scale_in(nodes, 3, 1)

    assert again.actions == []
    assert fingerprint(nodes) == before


def test_scale_in_to_fewer_than_3_masters_is_refused_before_anything_changes(make_nodes):
    nodes = make_nodes(8)
    form(nodes, 4, 1, timeout=60)
    before = fingerprint(nodes)

    with pytest.raises(PlanError, match=r"cluster.masters=2 would leave fewer than 3 masters"):
        _scale_in(nodes, 2, 1)
    assert fingerprint(nodes) == before


def test_scale_in_whose_data_does_not_fit_the_remaining_masters_is_refused(make_nodes):
    nodes = make_nodes(8)
    form(nodes, 4, 1, timeout=60)
    write_keys(nodes, 4000, prefix="x" * 200)
    before = fingerprint(nodes)

    with pytest.raises(PlanError, match=r"cluster.masters=3 would leave about .* of the memory limit"):
        _scale_in(nodes, 3, 1, memory_limit=2 * 2**20)
    assert fingerprint(nodes) == before


def test_a_scale_in_killed_mid_drain_is_finished_by_the_next_run(make_nodes):
    nodes = make_nodes(8)
    form(nodes, 4, 1, timeout=60)
    data = write_keys(nodes, 2000)

    class Killed(Exception):
        pass

    def die_after_first_batch(message: str) -> None:
        if message.startswith("moved 256/"):
            raise Killed

    with pytest.raises(Killed):
        ScaleIn(Connector(), members_from_addresses(nodes.addresses), 3, 1, 120, die_after_first_batch).run()

    _scale_in(nodes, 3, 1)
    assert not any(v.open_slots() for v in views_of(nodes))
    _remove_leaving(nodes, 6)
    form(nodes, 3, 1, timeout=60)
    assert_complete(nodes, 3, 1)
    assert read_back(nodes, data) == {}


def test_a_replica_back_on_an_empty_volume_takes_its_old_place_by_itself(make_nodes):
    nodes = make_nodes(6, node_timeout=1000)
    form(nodes, 3, 1, timeout=60)
    views = {v.address: v for v in views_of(nodes)}
    replica = next(n for n in nodes.nodes if views[str(n.address)].myself.is_replica)
    old_id = views[str(replica.address)].node_id

    _lose_volume(replica)
    assert assess(views_of(nodes), Expectation(3, 1))  # verify sees the departed ID (below) until healed
    outcome = _heal(nodes, 3, 1)

    assert "forgot departed node(s)" in outcome
    assert_complete(nodes, 3, 1)
    assert old_id not in _listed_ids(nodes)
    assert views_of(nodes)[nodes.nodes.index(replica)].node_id != old_id


def test_a_master_back_on_an_empty_volume_rejoins_as_a_replica_after_its_replica_took_over(make_nodes):
    nodes = make_nodes(6, node_timeout=1000)
    form(nodes, 3, 1, timeout=60)
    data = write_keys(nodes, 1000)
    views = {v.address: v for v in views_of(nodes)}
    master = next(n for n in nodes.nodes if views[str(n.address)].myself.slots)
    old_id = views[str(master.address)].node_id

    _lose_volume(master)
    _heal(nodes, 3, 1)

    assert_complete(nodes, 3, 1)
    assert views_of(nodes)[nodes.nodes.index(master)].myself.is_replica
    assert old_id not in _listed_ids(nodes)
    assert read_back(nodes, data) == {}


def test_verify_names_a_departed_node_and_the_fix(make_nodes):
    nodes = make_nodes(6, node_timeout=1000)
    form(nodes, 3, 1, timeout=60)
    replica = next(n for n in nodes.nodes if views_of(nodes)[nodes.nodes.index(n)].myself.is_replica)
    _lose_volume(replica)

    membership = next(c for c in assess(views_of(nodes), Expectation(3, 1)) if c.name == "membership")

    assert membership.status == "fail"
    assert "departed" in membership.detail and "reconciler" in membership.detail


def test_a_shard_that_lost_every_copy_is_refused_then_recovered_only_when_asked(make_nodes):
    nodes = make_nodes(6, node_timeout=1000)
    form(nodes, 3, 1, timeout=60)
    data = write_keys(nodes, 1500)
    views = {v.address: v for v in views_of(nodes)}
    master = next(n for n in nodes.nodes if views[str(n.address)].myself.slots)
    master_view = views[str(master.address)]
    replica = next(n for n in nodes.nodes if views[str(n.address)].myself.master_id == master_view.node_id)
    lost_ranges = master_view.myself.slots

    _lose_volume(master)
    _lose_volume(replica)
    members = members_from_addresses(nodes.addresses)
    wait_for(
        lambda: "lost every copy" in Reconciler(Connector(), members, 3, 1, log=print).step(),
        30,
        what="the departed master to be flagged failed",
    )
    before = fingerprint(nodes)
    with pytest.raises(ShardLost, match=r"slots \d+-\d+ \(lost with .*\).*--recover-lost-slots"):
        Formation(Connector(), members, 3, 1, timeout=30).run()
    assert fingerprint(nodes) == before

    result = Formation(Connector(), members, 3, 1, timeout=60, recover_lost_slots=True).run()

    assert result.lost_slots
    assert_complete(nodes, 3, 1)
    missing = read_back(nodes, data)
    assert missing, "the lost shard's keys cannot come back"
    from redis.crc import key_slot

    assert all(any(a <= key_slot(k.encode()) <= b for a, b in lost_ranges) for k in missing)
    assert len(missing) < len(data) / 2


def test_the_reconciler_leaves_new_pods_of_a_scale_out_to_the_hook(make_nodes):
    nodes = make_nodes(6)
    form(nodes, 3, 1, timeout=60)
    nodes.nodes += make_nodes(2).nodes
    before = fingerprint(nodes)

    outcome = Reconciler(Connector(), members_from_addresses(nodes.addresses), 4, 1, log=print).step()

    assert outcome == "ok"
    assert fingerprint(nodes) == before
