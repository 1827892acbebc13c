"""The failover controller on a real Kubernetes (issue 16): a master's pod lost without a handover is taken
over about a second later, where Redis alone waits the node timeout plus the election; it does nothing for
a replica's death, a frozen but running master, or when its own pod watch is broken (then Redis's own
failover still works and verify says the controller is not watching); two masters lost at once get one
promotion each.

One release of 5 masters with a replica each (two masters lost still leave a majority to vote), in a
namespace of its own, with `failoverController.enabled`. The with/without numbers are measured by the same
crash drill on the same release: the "without" one while the controller's watch is broken."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pytest

from helm_redis.faults import freeze, shutdown_now
from helm_redis.nodes import read_views, try_read_views
from tests.kube import CHART, cluster_env

from .conftest import Cluster, assert_drill_ok, chart_values, remove

pytestmark = pytest.mark.e2e
RELEASE = "fast"
CONTROLLER = f"{RELEASE}-redis-cluster-failover"
PROMOTIONS: dict[str, float] = {}  # crash drill promotion, with and without the controller


@pytest.fixture(scope="module")
def release() -> Iterator[Cluster]:
    env, helm_home = cluster_env("rch-fast-helm-")
    run_id = uuid.uuid4().hex[:6]
    values = [
        *chart_values(env, run_id),
        "--set",
        "cluster.masters=5",
        "--set",
        "failoverController.enabled=true",
    ]
    cluster = Cluster(f"rch-fast-{run_id}", {**env, "HELM_NAMESPACE": f"rch-fast-{run_id}"}, values)
    cluster.run("kubectl", "create", "namespace", cluster.namespace)
    try:
        started = time.monotonic()
        cluster.helm("install", RELEASE, str(CHART), *values, "--wait", "--timeout", "15m")
        checks = {c["name"]: c for c in cluster.wait_verified(RELEASE, 300)["checks"]}
        cluster.timed("install -> verified", started)
        assert checks["failover-controller"]["status"] == "pass", checks["failover-controller"]
        assert "running" in checks["failover-controller"]["detail"], checks["failover-controller"]
        yield cluster
    finally:
        if PROMOTIONS:
            print(f"\n[e2e] crash drill promotion: {PROMOTIONS}")
        remove(cluster, [RELEASE], helm_home)


def _log(cluster: Cluster, since: float | None = None) -> str:
    """The controller's log (since the monotonic time `since`, to the second)."""
    window = ["--since", f"{int(time.monotonic() - since) + 1}s"] if since is not None else []
    return cluster.kubectl("logs", f"deployment/{CONTROLLER}", "--tail", "300", *window).stdout


def _masters(cluster: Cluster) -> dict[str, str]:
    """pod -> node ID of every master serving slots."""
    target = cluster.open(RELEASE)
    try:
        views = read_views(target.connector, [m.address for m in target.members])
        return {
            m.name: v.node_id
            for m, v in zip(target.members, views, strict=True)
            if v.myself.is_master and v.myself.slots
        }
    finally:
        target.close()


def test_crash_is_taken_over_by_the_controller_in_about_a_second(release: Cluster):
    ids = release.node_ids(RELEASE)

    report = release.drill(RELEASE, "crash", "--timeout", "300")

    assert_drill_ok(report)
    PROMOTIONS["with the controller"] = report["promotion_seconds"]
    assert report["failover_controller"].startswith("running"), report["failover_controller"]
    assert report["new_master"], report
    assert report["promotion_seconds"] < 3.0, (report["promotion_seconds"], _log(release)[-2000:])
    assert report["manual_failovers"] == 0  # FORCE sends no MFSTART: an unplanned failover, as measured
    log = _log(release)
    assert f"{report['target']} (" in log and "promoted" in log, log[-2000:]
    assert release.node_ids(RELEASE) == ids  # the old master back as a replica with its node ID
    assert release.role(RELEASE, report["target"]) == "replica"


def test_a_restart_in_place_loses_nothing_and_the_shard_writes_again_at_once(release: Cluster):
    report = release.drill(RELEASE, "restart", "--timeout", "300")

    assert_drill_ok(report)
    longest = max(s["longest_gap_seconds"] for s in report["shards"])
    print(f"[e2e] restart in place: promotion {report['promotion_seconds']} s, longest write gap {longest} s")
    print("[e2e] controller: " + "\n".join(line for line in _log(release).splitlines()[-5:]))
    assert longest < 5.0, report["shards"]


def test_no_takeover_for_a_replica_death_or_a_frozen_master(release: Cluster):
    masters = _masters(release)
    target = release.open(RELEASE)
    try:
        by_name = {m.name: m for m in target.members}
        replica = next(name for name in by_name if name not in masters)
        master = sorted(masters)[0]
        started = time.monotonic()
        # A replica's process exits: the kubelet restarts its container; nothing to take over.
        shutdown_now(target.connector, by_name[replica].address)
        # A master frozen for 3 s (running, only slow): Redis's own detection decides, and 3 s is below
        # the node timeout, so nobody takes over.
        freeze(target.connector, by_name[master].address, 3)
        time.sleep(6)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            answers = try_read_views(target.connector, [m.address for m in target.members])
            if all(not isinstance(a, Exception) for a in answers):
                break
            time.sleep(1)
    finally:
        target.close()

    assert _masters(release) == masters
    log = _log(release, started)
    print(f"[e2e] controller after a replica's death and a frozen master:\n{log}")
    assert "promoted" not in log
    assert f"{replica} (" in log and "no master serving slots" in log  # seen, and left alone
    assert f"{master} (" not in log  # a running container is never an event the controller acts on
    release.wait_verified(RELEASE, 300)


def test_two_masters_lost_at_once_get_one_promotion_each(release: Cluster):
    release.wait_verified(RELEASE, 300)
    masters = _masters(release)
    lost = sorted(masters)[:2]
    target = release.open(RELEASE)
    try:
        by_name = {m.name: m for m in target.members}
        for pod in lost:
            freeze(target.connector, by_name[pod].address, 60)
        started = time.monotonic()
        for pod in lost:
            target.delete_pod(pod, 0)
        deadline = started + 20
        while time.monotonic() < deadline:
            now = _masters_by_id(target)
            if not {masters[p] for p in lost} & set(now):
                break
            time.sleep(0.1)
        seconds = time.monotonic() - started
    finally:
        target.close()
    print(f"[e2e] two masters lost at once: both shards taken over {seconds:.2f} s after the deletions")
    print("[e2e] controller: " + "\n".join(_log(release).splitlines()[-4:]))
    assert seconds < 5.0
    release.wait_verified(RELEASE, 300)
    assert sorted(_masters(release)) != sorted(masters)


def _masters_by_id(target) -> set[str]:
    """Node IDs of the masters serving slots, as the answering nodes see them."""
    answers = try_read_views(target.connector, [m.address for m in target.members])
    return {
        n.node_id
        for v in answers
        if not isinstance(v, Exception)
        for n in v.nodes
        if n.is_master and n.slots and not n.is_failing
    }


def test_with_its_watch_broken_it_does_nothing_and_redis_fails_over_by_itself(release: Cluster):
    release.kubectl("delete", "rolebinding", CONTROLLER)
    try:
        release.kubectl("delete", "pod", "-l", "app.kubernetes.io/component=failover", "--wait=true")
        deadline = time.monotonic() + 120
        while "not watching: the pod watch failed: 403" not in _log(release):
            assert time.monotonic() < deadline, _log(release)
            time.sleep(1)
        done = release.helm_redis("verify", RELEASE, "--output", "json")
        assert done.returncode == 1, done.stderr
        report = json.loads(done.stdout)
        check = next(c for c in report["checks"] if c["name"] == "failover-controller")
        assert check["status"] == "fail" and "not ready" in check["detail"], check

        drill = release.drill(RELEASE, "crash", "--timeout", "300", verified_first=False)

        assert_drill_ok(drill)
        PROMOTIONS["without (watch broken)"] = drill["promotion_seconds"]
        assert "not ready" in drill["failover_controller"], drill["failover_controller"]
        assert "promoted" not in _log(release)
        assert drill["promotion_seconds"] > PROMOTIONS.get("with the controller", 0)
    finally:
        account = f"{release.namespace}:{CONTROLLER}"
        release.kubectl(
            "create", "rolebinding", CONTROLLER, f"--role={CONTROLLER}", f"--serviceaccount={account}"
        )
    # It lists again every 2 s: with its permission back it watches (and is Ready) again by itself.
    checks = {c["name"]: c for c in release.wait_verified(RELEASE, 300)["checks"]}
    assert checks["failover-controller"]["detail"].startswith("running"), checks["failover-controller"]
