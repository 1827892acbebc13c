"""Surviving restarts without the hook: the start step (nodes.conf rewrite), preStop handover, readiness."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
import redis

from helm_redis.health import DONE_CHECKS, Expectation, assess, failed
from helm_redis.nodesconf import prepare_nodes_conf

from .helpers import (
    assert_complete,
    cluster_client,
    form,
    master_and_replica,
    read_back,
    views_of,
    wait_for,
    write_keys,
)

pytestmark = pytest.mark.redis

FILES = Path(__file__).resolve().parents[2] / "charts" / "redis-cluster" / "files"


def _complete(nodes, masters=3, replicas=1) -> bool:
    return not failed(assess(views_of(nodes), Expectation(masters, replicas)), DONE_CHECKS)


def _ids_by_hostname(nodes) -> dict[str, str]:
    return {n.hostname: v.node_id for n, v in zip(nodes.nodes, views_of(nodes), strict=True)}


def test_all_nodes_restarted_on_new_addresses_reform_with_the_same_ids_and_keys(make_nodes):
    nodes = make_nodes(6)
    form(nodes, 3, 1, timeout=60)
    data = write_keys(nodes, 500)
    ids_before = _ids_by_hostname(nodes)

    nodes.stop()  # every pod at once
    new_addresses = nodes.move_to_new_block()
    for node in nodes.nodes:  # what each pod's start step does before redis-server starts
        prepare_nodes_conf(node.nodes_conf, timeout=5, resolve=new_addresses.get, progress=lambda _m: None)
    started = time.monotonic()
    nodes.start()
    wait_for(lambda: _complete(nodes), timeout=60, what="the cluster to re-form")
    print(f"\nfull restart on new addresses: complete again {time.monotonic() - started:.2f} s after start")

    assert _ids_by_hostname(nodes) == ids_before
    assert_complete(nodes, 3, 1)
    assert read_back(nodes, data) == {}


def _restart_on_new_addresses_without_the_start_step(nodes) -> None:
    """Nodes restart believing their stale peers are up; after the node timeout they see the truth."""
    nodes.stop()
    nodes.move_to_new_block()
    nodes.start()
    wait_for(
        lambda: all(v.cluster_info["cluster_state"] == "fail" for v in views_of(nodes)),
        timeout=30,
        what="every node to notice its peers are gone",
    )


def test_without_the_start_step_a_full_restart_on_new_addresses_stays_down(make_nodes):
    nodes = make_nodes(6)
    form(nodes, 3, 1, timeout=60)

    _restart_on_new_addresses_without_the_start_step(nodes)
    time.sleep(3)

    assert all(v.cluster_info["cluster_state"] == "fail" for v in views_of(nodes))


def _run_script(name: str, node, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(FILES / name)],
        env={**os.environ, "REDIS_HOST": node.ip, "REDIS_PORT": str(node.port), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


class Writer(threading.Thread):
    """Writes sequenced keys through a cluster client until stopped; records errors and the longest gap."""

    def __init__(self, nodes) -> None:
        super().__init__(daemon=True)
        self.client = cluster_client(nodes)
        self.stop_event = threading.Event()
        self.written = 0
        self.errors = 0
        self.longest_gap = 0.0

    def run(self) -> None:
        last_ok = time.monotonic()
        for seq in range(200_000):  # bounded
            if self.stop_event.is_set():
                break
            try:
                self.client.set(f"w:{seq}", seq)
                self.written += 1
                now = time.monotonic()
                self.longest_gap = max(self.longest_gap, now - last_ok)
                last_ok = now
            except redis.RedisError:
                self.errors += 1
            time.sleep(0.001)

    def finish(self) -> None:
        self.stop_event.set()
        self.join(timeout=30)


def test_prestop_hands_a_masters_slots_to_its_replica_while_writes_continue(make_nodes):
    nodes = make_nodes(6)
    form(nodes, 3, 1, timeout=60)
    master, replica = master_and_replica(nodes)
    writer = Writer(nodes)
    writer.start()
    time.sleep(0.3)

    done = _run_script("prestop.sh", master, PRESTOP_TIMEOUT_SECONDS="20")
    written_at_handover = writer.written
    time.sleep(0.3)
    writer.finish()

    assert done.returncode == 0, done.stderr
    assert f"handed over to {replica.ip}:{replica.port}" in done.stdout
    assert master.client().execute_command("ROLE")[0] == "slave"
    assert replica.client().execute_command("ROLE")[0] == "master"
    assert writer.errors == 0
    assert writer.written > written_at_handover  # writes went on against the new master
    print(f"\nplanned handover: longest client-seen write gap {writer.longest_gap * 1000:.0f} ms")


def test_prestop_on_a_replica_changes_nothing(make_nodes):
    nodes = make_nodes(6)
    form(nodes, 3, 1, timeout=60)
    master, replica = master_and_replica(nodes)

    done = _run_script("prestop.sh", replica)

    assert done.returncode == 0
    assert "nothing to hand over" in done.stdout
    assert master.client().execute_command("ROLE")[0] == "master"


def test_prestop_on_a_master_without_an_online_replica_just_stops(make_nodes):
    nodes = make_nodes(6)
    form(nodes, 3, 1, timeout=60)
    master, replica = master_and_replica(nodes)
    replica.stop(kill=True)
    wait_for(
        lambda: "slave0" not in master.client().info("replication"),
        timeout=20,
        what="the replica link to drop",
    )

    done = _run_script("prestop.sh", master, PRESTOP_TIMEOUT_SECONDS="5")

    assert done.returncode == 0
    assert "no online replica" in done.stdout
    assert master.client().execute_command("ROLE")[0] == "master"


def test_readiness_is_ready_before_formation_and_when_the_cluster_is_ok(make_nodes):
    nodes = make_nodes(6)
    assert _run_script("readiness.sh", nodes.nodes[0]).returncode == 0  # alone: the hook has not run yet

    form(nodes, 3, 1, timeout=60)

    assert _run_script("readiness.sh", nodes.nodes[0]).returncode == 0


def test_readiness_fails_when_the_node_sees_the_cluster_down(make_nodes):
    nodes = make_nodes(6)
    form(nodes, 3, 1, timeout=60)
    _restart_on_new_addresses_without_the_start_step(nodes)

    probe = _run_script("readiness.sh", nodes.nodes[0])

    assert probe.returncode == 1
    assert "cluster_state:fail" in probe.stdout
