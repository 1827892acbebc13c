"""Day two on a real Kubernetes, with a dataset whose full resync takes seconds: a rolling restart, an
upgrade that changes redis.conf and an upgrade without --wait each keep every shard writable (no shard
without a writable master for more than 2 s: a handover takes milliseconds, a node-timeout failover
seconds), lose no acknowledged write and keep every node ID.

A restarted replica cannot resync partially (it reloads its AOF and gets a new replication ID), so each
rolled replica needs a full resync; with a tiny dataset that takes milliseconds and hides every readiness
defect. The dataset here is random bytes (incompressible, so the RDB sent is as large as the data).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
import redis
from redis.crc import key_slot

from helm_redis.clusterview import NodeView
from helm_redis.drill import Router
from helm_redis.errors import NodeUnreachable
from helm_redis.nodes import read_view, read_views, try_read_views
from helm_redis.release import ReleaseTarget
from tests.kube import CHART

from .conftest import VOLUME_ROOT, Cluster, assert_writable_throughout

pytestmark = pytest.mark.e2e
RELEASE = "rollout"
STATEFULSET = f"{RELEASE}-redis-cluster"
DATASET_MB = int(os.environ.get("RCH_ROLLOUT_DATASET_MB", "600"))
VALUE_BYTES = 100_000
MAX_UNWRITABLE_SECONDS = 2.0  # the one timing bound: a handover, not a node-timeout failover
# Another chart directory to hold to the same bounds (e.g. an older checkout's, to see these tests fail
# where its readiness let a rollout outrun the replicas' resyncs).
CHART_UNDER_TEST = os.environ.get("RCH_ROLLOUT_CHART", str(CHART))


def _load_dataset(target: ReleaseTarget, megabytes: int) -> float:
    """Random values over every slot, pipelined per master; returns the dataset's MB as Redis counts it."""
    router = Router(target.connector, [m.address for m in target.members])
    by_master: dict = {}
    for i in range(megabytes * 1_000_000 // VALUE_BYTES):
        key = f"dataset:{i}"
        by_master.setdefault(router.owner[key_slot(key.encode())], []).append(key)
    for master, keys in by_master.items():
        client = target.connector.client(master)
        for start in range(0, len(keys), 20):
            pipe = client.pipeline(transaction=False)
            for key in keys[start : start + 20]:
                pipe.set(key, os.urandom(VALUE_BYTES))
            pipe.execute()
    return sum(int(target.connector.client(m).info("memory")["used_memory_dataset"]) for m in by_master) / 1e6


def _await_in_sync(target: ReleaseTarget, pod: str, timeout: float) -> None:
    member = next(m for m in target.members if m.name == pod)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            view = read_view(target.connector, member.address)
            replication = view.replication
            if (
                view.myself.is_replica
                and replication.get("master_link_status") == "up"
                and not int(replication.get("master_sync_in_progress", 0))
            ):
                return
        except (NodeUnreachable, redis.RedisError):  # restarting: its port-forward fails until it is back
            pass
        time.sleep(0.2)
    raise AssertionError(f"{pod} not in sync within {timeout} s")


def _pair_each_master_with_the_pod_rolled_just_before_it(target: ReleaseTarget) -> None:
    """Masters on the even ordinals, each replicated by the next pod (1 -> 0, 3 -> 2, 5 -> 4).

    The StatefulSet rolls from the highest ordinal down, so each master's only replica restarts right
    before the master's own turn: the pairing the hook's topology-aware plan makes on several Kubernetes
    nodes (pods spread round-robin, a replica never beside its master), and the one where a rollout that
    outruns a replica's resync leaves the master nobody to hand over to. On one node the hook pairs
    3 -> 0, 4 -> 1, 5 -> 2; the test re-pairs with CLUSTER FAILOVER and CLUSTER REPLICATE (no data lost:
    a replica that changes master resyncs from it).
    """
    by_ordinal = {m.ordinal: m for m in target.members}

    def views() -> dict[int, NodeView]:
        """Every node's view, waiting through nodes that load a dataset after changing master."""
        deadline = time.monotonic() + 300
        while True:
            found = try_read_views(target.connector, [m.address for m in target.members])
            if all(isinstance(v, NodeView) for v in found):
                return {m.ordinal: v for m, v in zip(target.members, found, strict=True)}  # type: ignore[misc]
            assert time.monotonic() < deadline, f"nodes still loading after 300 s: {found}"
            time.sleep(0.5)

    def settle(what: str) -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            current = views()
            if all(
                v.myself.is_master
                or (
                    v.replication.get("master_link_status") == "up"
                    and not int(v.replication.get("master_sync_in_progress", 0))
                )
                for v in current.values()
            ):
                return
            time.sleep(0.5)
        raise AssertionError(f"not settled within 300 s after {what}")

    for even in range(0, len(by_ordinal), 2):
        if not views()[even].myself.is_master:
            target.connector.client(by_ordinal[even].address).execute_command("CLUSTER", "FAILOVER")
            deadline = time.monotonic() + 60
            while not views()[even].myself.is_master:
                assert time.monotonic() < deadline, f"pod {even} did not take over"
                time.sleep(0.2)
    settle("the failovers")
    # All at once: a master left without a replica for 5 s (CLUSTER_SLAVE_MIGRATION_DELAY) would be given
    # one by Redis's replica migration, undoing the pairing.
    current = views()
    for odd in range(1, len(by_ordinal), 2):
        master_id = current[odd - 1].node_id
        if current[odd].myself.master_id != master_id:
            replica = target.connector.client(by_ordinal[odd].address)
            replica.execute_command("CLUSTER", "REPLICATE", master_id)
    settle("the replicas changing master")
    current = views()
    assert all(current[o].myself.master_id == current[o - 1].node_id for o in range(1, len(current), 2))


@pytest.fixture(scope="module")
def release(cluster: Cluster) -> Iterator[Cluster]:
    started = time.monotonic()
    cluster.helm(
        "install",
        RELEASE,
        CHART_UNDER_TEST,
        *cluster.values,
        # This release's volumes apart from the other releases' in the namespace.
        "--set",
        f"persistence.hostPath.path={VOLUME_ROOT}/{cluster.namespace}/{{{{release}}}}/{{{{ordinal}}}}",
        "--wait",
        "--timeout",
        "15m",
    )
    cluster.wait_verified(RELEASE, 180, "--read-only")
    cluster.timed("rollout release installed and verified", started)
    target = cluster.open(RELEASE)
    try:
        started = time.monotonic()
        megabytes = _load_dataset(target, DATASET_MB)
        cluster.timed(f"dataset loaded ({megabytes:.0f} MB in Redis)", started)
        started = time.monotonic()
        _pair_each_master_with_the_pod_rolled_just_before_it(target)
        cluster.timed("masters paired with the pod rolled just before them (1->0, 3->2, 5->4)", started)
        # How long one replica takes to be back in sync after a restart (AOF load + full resync).
        views = read_views(target.connector, [m.address for m in target.members])
        replica = next(m.name for m, v in zip(target.members, views, strict=True) if v.myself.is_replica)
        started = time.monotonic()
        # --wait: until the old pod is gone (its process could still answer, in sync, while it stops).
        cluster.kubectl("delete", "pod", replica, "--wait=true", "--timeout=120s")
        _await_in_sync(target, replica, 300)
        cluster.timed(f"replica {replica} restarted and back in sync (full resync of its shard)", started)
    finally:
        target.close()
    cluster.wait_verified(RELEASE, 180, "--read-only")
    try:
        yield cluster
    finally:
        cluster.helm("uninstall", RELEASE, "--wait", "--timeout", "5m", check=False)


def _assert_no_shard_down_and_nothing_lost(cluster: Cluster, what: str, result: dict, ids: dict) -> None:
    what = f"{what} with {DATASET_MB} MB"
    assert_writable_throughout(cluster, RELEASE, what, result, ids, MAX_UNWRITABLE_SECONDS)


def test_rolling_restart_keeps_every_shard_writable(release: Cluster):
    ids = release.node_ids(RELEASE)
    started = time.monotonic()
    with release.write_load(RELEASE) as result:
        release.kubectl("rollout", "restart", f"statefulset/{STATEFULSET}")
        time.sleep(2)
        release.rollout_finished(STATEFULSET)
        release.wait_verified(RELEASE, 300, "--read-only")
    release.timed("kubectl rollout restart -> verified", started)
    _assert_no_shard_down_and_nothing_lost(release, "kubectl rollout restart", result, ids)


def test_upgrade_that_changes_redis_conf_rolls_every_pod_without_downtime(release: Cluster):
    ids = release.node_ids(RELEASE)
    started = time.monotonic()
    with release.write_load(RELEASE) as result:
        release.helm(
            "upgrade",
            RELEASE,
            CHART_UNDER_TEST,
            "--reuse-values",
            "--set",
            "redis.extraConfig=lazyfree-lazy-user-del yes",
            "--wait",
            "--timeout",
            "15m",
        )
        release.rollout_finished(STATEFULSET)
        release.wait_verified(RELEASE, 300, "--read-only")
    release.timed("helm upgrade (redis.conf changed) -> verified", started)
    _assert_no_shard_down_and_nothing_lost(release, "helm upgrade changing redis.conf", result, ids)


def test_upgrade_without_wait_succeeds_while_the_pods_roll(release: Cluster):
    """The hook runs at once, while the StatefulSet rolls under it: it waits through the restarting pods
    and the upgrade succeeds (no failed release, no --atomic rollback)."""
    ids = release.node_ids(RELEASE)
    started = time.monotonic()
    with release.write_load(RELEASE) as result:
        upgraded = release.helm(
            "upgrade",
            RELEASE,
            CHART_UNDER_TEST,
            "--reuse-values",
            "--set",
            "redis.extraConfig=lazyfree-lazy-user-del no",
            "--timeout",
            "15m",
        )
        release.timed("helm upgrade without --wait returned (hook done)", started)
        release.rollout_finished(STATEFULSET)
        release.wait_verified(RELEASE, 300, "--read-only")
    release.timed("helm upgrade without --wait -> verified", started)
    status = release.helm("status", RELEASE, "-o", "json").stdout
    assert '"status":"deployed"' in status.replace(" ", ""), upgraded.stdout
    _assert_no_shard_down_and_nothing_lost(release, "helm upgrade without --wait", result, ids)
