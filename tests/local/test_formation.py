"""Formation against real redis-server processes: `helm-redis init` semantics, phase by phase."""

from __future__ import annotations

import subprocess

import pytest
import redis

from helm_redis.errors import UnexpectedData
from helm_redis.formation import Formation, members_from_addresses
from helm_redis.nodes import Connector

from .helpers import ADMIN, TEST_USERS, assert_complete, fingerprint, form, read_back, views_of, write_keys

pytestmark = pytest.mark.redis


@pytest.mark.parametrize(
    ("masters", "replicas"),
    [(3, 1), (3, 2), (10, 1)],
    ids=["6-nodes-1-replica", "9-nodes-2-replicas", "10-masters-1-replica"],
)
def test_fresh_nodes_become_a_complete_cluster(make_nodes, masters, replicas):
    nodes = make_nodes(masters * (1 + replicas), replicas_per_master=replicas)

    result = form(nodes, masters, replicas, timeout=60)

    assert not result.already_formed
    assert_complete(nodes, masters, replicas)


def test_three_masters_get_the_standard_slot_ranges(make_nodes):
    nodes = make_nodes(6)

    form(nodes, 3, 1, timeout=60)

    slots = sorted(v.myself.slots for v in views_of(nodes) if v.myself.slots)
    assert slots == [((0, 5460),), ((5461, 10922),), ((10923, 16383),)]


def test_second_and_tenth_run_change_nothing(make_nodes):
    nodes = make_nodes(6)
    form(nodes, 3, 1, timeout=60)
    data = write_keys(nodes, 300)
    before = fingerprint(nodes)

    second = form(nodes, 3, 1, timeout=60)
    for _ in range(8):
        last = form(nodes, 3, 1, timeout=60)

    assert second.already_formed and last.already_formed
    assert second.actions == [] and last.actions == []
    assert fingerprint(nodes) == before
    assert read_back(nodes, data) == {}


def test_dry_run_plans_without_changing_anything(make_nodes):
    nodes = make_nodes(6)
    before = fingerprint(nodes)

    connector = Connector()
    result = Formation(connector, members_from_addresses(nodes.addresses), 3, 1, timeout=30).run(dry_run=True)

    assert [row["slots"] for row in result.plan] == ["0-5460", "5461-10922", "10923-16383"]
    assert all(row["replicas"] for row in result.plan)
    assert result.actions == []
    assert fingerprint(nodes) == before


class Interrupted(Exception):
    """Stands in for the hook being killed between two phases."""


def _formation_stopping_after(nodes, phase: str, fraction: float = 1.0) -> Formation:
    """A Formation whose run dies right after `phase` (optionally after only part of that phase)."""

    class Stopping(Formation):
        def _assign_slots(self, state, slot_plan):
            super()._assign_slots(state, slot_plan)
            if phase == "slots":
                raise Interrupted

        def _introduce(self, state, todo):
            if phase == "meet":
                items = list(todo.items())[: max(1, int(len(todo) * fraction))]
                super()._introduce(state, dict(items))
                raise Interrupted
            super()._introduce(state, todo)

        def _replicate(self, state, assignment):
            if phase == "replicate":
                assignment.replicas = assignment.replicas[: max(1, int(len(assignment.replicas) * fraction))]
                super()._replicate(state, assignment)
                raise Interrupted
            return super()._replicate(state, assignment)

    return Stopping(Connector(), members_from_addresses(nodes.addresses), 3, 1, timeout=60)


@pytest.mark.parametrize(
    ("phase", "fraction"),
    [("slots", 1.0), ("meet", 0.5), ("replicate", 0.5)],
    ids=["after-slots-assigned", "meet-half-done", "replicate-half-done"],
)
def test_a_run_killed_mid_way_is_finished_by_the_next(make_nodes, phase, fraction):
    nodes = make_nodes(6)
    with pytest.raises(Interrupted):
        _formation_stopping_after(nodes, phase, fraction).run()

    result = form(nodes, 3, 1, timeout=60)

    assert not result.already_formed
    assert_complete(nodes, 3, 1)
    slots = sorted(v.myself.slots for v in views_of(nodes) if v.myself.slots)
    assert slots == [((0, 5460),), ((5461, 10922),), ((10923, 16383),)]


def test_scale_out_from_6_to_8_nodes_moves_slots_and_keeps_every_key(make_nodes):
    nodes = make_nodes(6)
    form(nodes, 3, 1, timeout=60)
    data = write_keys(nodes, 3000)
    extra = make_nodes(2)
    nodes.nodes += extra.nodes

    result = form(nodes, 4, 1, timeout=120)

    assert any("moved" in action for action in result.actions)
    assert_complete(nodes, 4, 1)
    counts = sorted(v.myself.slot_count for v in views_of(nodes) if v.myself.slots)
    assert counts == [4096, 4096, 4096, 4096]
    assert read_back(nodes, data) == {}


def _restore_data(node, data: dict[str, str]) -> None:
    """Give a node keys from an old dataset (AOF written outside cluster mode), as a restored backup would."""
    node.stop()
    plain = subprocess.Popen(
        ["redis-server", str(node.directory / "redis.conf"), "--cluster-enabled", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        node.wait_ready()
        client = node.client()
        for key, value in data.items():
            client.set(key, value)
        client.shutdown()
    except redis.ConnectionError:
        pass
    plain.wait(timeout=30)
    node.start()
    node.wait_ready()


def _keys_held(node, key: str) -> list[str]:
    """The keys of `key`'s slot on that node (works while the node's cluster_state is fail)."""
    client = node.client()
    return client.execute_command("CLUSTER", "GETKEYSINSLOT", client.cluster("KEYSLOT", key), 10)


def test_a_stray_node_with_keys_is_refused_and_left_untouched(make_nodes):
    nodes = make_nodes(6)
    stray = nodes.nodes[4]
    _restore_data(stray, {"precious": "data"})
    before = fingerprint(nodes)

    with pytest.raises(UnexpectedData) as refused:
        form(nodes, 3, 1, timeout=30)

    assert str(stray.address) in str(refused.value)
    assert "1 keys" in str(refused.value)
    assert fingerprint(nodes) == before
    assert _keys_held(stray, "precious") == ["precious"]


def test_a_new_node_with_keys_is_refused_on_scale_out(make_nodes):
    nodes = make_nodes(6)
    form(nodes, 3, 1, timeout=60)
    extra = make_nodes(2)
    _restore_data(extra.nodes[0], {"elsewhere": "1"})
    nodes.nodes += extra.nodes
    before = fingerprint(nodes)

    with pytest.raises(UnexpectedData) as refused:
        form(nodes, 4, 1, timeout=30)

    assert str(extra.nodes[0].address) in str(refused.value)
    assert fingerprint(nodes) == before
    assert _keys_held(extra.nodes[0], "elsewhere") == ["elsewhere"]


def test_formation_with_acl_users(make_nodes):
    nodes = make_nodes(6, users=TEST_USERS)

    form(nodes, 3, 1, login=ADMIN, timeout=60)

    assert_complete(nodes, 3, 1, login=ADMIN)


def test_a_run_during_a_restart_waits_for_the_restarting_node_and_changes_nothing(make_nodes):
    """`helm upgrade` without --wait runs the hook while the StatefulSet rolls: a pod that restarts under
    the hook is waited for (bounded), named in the progress, and the formed cluster is left as it is."""
    import threading
    import time

    nodes = make_nodes(6)
    form(nodes, 3, 1, timeout=60)
    before = fingerprint(nodes)
    first, second = [n for n in nodes.nodes if n.client().execute_command("ROLE")[0] == "slave"][:2]
    first.stop()  # SIGTERM: a pod's container stopping in a rollout

    def roll_on() -> None:  # the next pod goes down as the first one comes back
        time.sleep(2)
        second.stop()
        first.start()
        time.sleep(3)
        second.start()

    rollout = threading.Thread(target=roll_on)
    rollout.start()
    messages: list[str] = []
    try:
        result = form(nodes, 3, 1, timeout=60, progress=messages.append)
    finally:
        rollout.join()

    assert result.already_formed
    assert any(str(second.address) in m and "waiting" in m for m in messages), messages
    assert_complete(nodes, 3, 1)
    after = fingerprint(nodes)
    assert {a: v[:3] for a, v in after.items()} == {a: v[:3] for a, v in before.items()}


def test_a_run_gives_up_with_one_line_naming_a_node_that_never_comes_back(make_nodes):
    from helm_redis.errors import NodesNotReady

    nodes = make_nodes(6)
    form(nodes, 3, 1, timeout=60)
    gone = nodes.nodes[5]
    gone.stop(kill=True)

    with pytest.raises(NodesNotReady, match=str(gone.address)):
        form(nodes, 3, 1, timeout=3)
