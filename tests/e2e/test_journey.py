"""The seed's whole journey on a real Kubernetes, in order: install -> verify -> drills -> full restart ->
upgrades (same values, then one more master and replica) -> bad input -> uninstall."""

from __future__ import annotations

import json
import time

import pytest

from helm_redis.nodes import read_views
from tests.kube import CHART, ROOT, default_images

from .conftest import Cluster
from .oci import PublishedChart, publish_chart, registry_of, same_image, served_digest

pytestmark = pytest.mark.e2e
RELEASE = "redis"
KEYS = 2000


def _fingerprint(cluster: Cluster) -> dict[str, tuple]:
    """pod -> (node id, config epoch, slots) as each node sees itself."""
    target = cluster.open(RELEASE)
    try:
        views = read_views(target.connector, [m.address for m in target.members])
        return {
            m.name: (v.node_id, v.myself.config_epoch, v.myself.slots)
            for m, v in zip(target.members, views, strict=True)
        }
    finally:
        target.close()


def _journey_keys(count: int) -> dict[str, str]:
    return {f"journey:{i}": str(i) for i in range(count)}


def _wait_verified(cluster: Cluster, timeout: float) -> dict:
    """Poll `helm redis verify` until it passes; while pods restart it may also exit 2 (no node answers)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        done = cluster.plugin("verify", RELEASE, "--output", "json", check=False)
        if done.returncode == 0:
            return json.loads(done.stdout)
        last = done.stdout[-2000:] or done.stderr[-500:]
        time.sleep(3)
    raise AssertionError(f"not verified within {timeout} s: {last}")


@pytest.fixture(scope="module")
def chart(cluster: Cluster, tmp_path_factory) -> PublishedChart:
    """The chart as users get it: packaged, pushed to the registry, installed from there by its OCI name."""
    started = time.monotonic()
    published = publish_chart(cluster, tmp_path_factory.mktemp("chart"))
    cluster.timed("helm package + push", started)
    size = published.package_bytes
    print(f"\n[e2e] chart {published.ref}:{published.version} {published.digest} ({size} B)")
    return published


def test_install_from_the_registry_forms_the_cluster_and_helm_test_passes(cluster: Cluster, chart):
    started = time.monotonic()
    cluster.helm("install", RELEASE, *chart.install_args(), *cluster.values, "--wait", "--timeout", "15m")
    cluster.timed("install from oci:// (hook done)", started)
    cluster.helm("test", RELEASE, "--timeout", "5m")
    _wait_verified(cluster, 120)
    cluster.timed("install -> verified cluster", started)
    cluster.write_keys(RELEASE, _journey_keys(KEYS))


def test_the_release_is_the_pushed_chart_and_its_pods_run_the_pushed_images(cluster: Cluster, chart):
    registry = registry_of(cluster)
    release = json.loads(cluster.helm("list", "--filter", f"^{RELEASE}$", "--output", "json").stdout)
    assert [r["chart"] for r in release] == [f"redis-cluster-{chart.version}"]
    pods = json.loads(
        cluster.kubectl("get", "pods", "-l", f"app.kubernetes.io/instance={RELEASE}", "-o", "json").stdout
    )["items"]
    ran: dict[str, set[str]] = {}
    for pod in pods:
        for status in pod["status"].get("initContainerStatuses", []) + pod["status"]["containerStatuses"]:
            ran.setdefault(status["image"], set()).add(status["imageID"])
    # What a default install names (no image values were given on this cluster), each pulled by
    # containerd from the registry: a pulled image is reported by a repository digest the registry
    # holds, an imported one by its config digest only.
    assert set(ran) == set(default_images().values()), ran
    for image, ids in ran.items():
        repository = image.rpartition(":")[0]
        assert len(ids) == 1, (image, ids)
        pulled_repository, _, digest = ids.pop().partition("@")
        assert pulled_repository == repository, (image, pulled_repository)
        assert same_image(registry, image, digest), (image, digest, served_digest(registry, image))
    print(f"\n[e2e] pods ran the pushed images: {sorted(ran)}")


def test_nfs_persistent_volumes_pass_a_server_side_dry_run(cluster: Cluster):
    rendered = cluster.helm("template", "nfs", str(CHART), "-f", str(CHART / "ci" / "nfs-values.yaml")).stdout
    applied = cluster.run(
        "kubectl", "apply", "--dry-run=server", "-n", cluster.namespace, "-f", "-", input=rendered
    )
    assert "persistentvolume/" in applied.stdout and "(server dry run)" in applied.stdout


def test_plugin_verify_passes_through_port_forwards(cluster: Cluster):
    started = time.monotonic()
    code, report = cluster.plugin_json("verify", RELEASE)
    cluster.timed("helm redis verify", started)
    assert code == 0, report
    names = {c["name"] for c in report["checks"]}
    assert {"pods-ready", "data-on-persistent-volume", "write-read", "replica-links"} <= names
    table = cluster.plugin("verify", RELEASE)
    assert "healthy and complete" in table.stdout


@pytest.mark.parametrize("mode", ["crash", "graceful"])
def test_drill_promotes_the_replica_and_the_pod_rejoins_with_its_node_id(cluster: Cluster, mode: str):
    before = _fingerprint(cluster)
    code, report = cluster.plugin_json("drill", RELEASE, "--mode", mode, "--timeout", "300")
    print(
        f"\n[e2e] {mode} drill: promotion {report.get('promotion_seconds')} s, "
        f"write gaps {report.get('write_gap_seconds')}, writes {report.get('writes')}, "
        f"timeline {report.get('timeline')}"
    )
    assert code == 0, report
    assert report["writes"]["lost_acknowledged"] == 0
    assert report["writes"]["acknowledged"] > 0
    events = [e["event"] for e in report["timeline"]]
    assert {"replica promoted", "node back", "rejoined as replica", "replication link up"} <= set(events)
    after = _fingerprint(cluster)
    assert {pod: ids[0] for pod, ids in after.items()} == {pod: ids[0] for pod, ids in before.items()}
    _wait_verified(cluster, 180)


def test_every_pod_deleted_at_once_reforms_with_the_same_ids_and_keys(cluster: Cluster):
    before = _fingerprint(cluster)
    started = time.monotonic()
    cluster.kubectl(
        "delete",
        "pod",
        "-l",
        f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=redis",
        "--wait=false",
    )
    time.sleep(5)
    _wait_verified(cluster, 600)
    cluster.timed("full restart -> verified", started)
    after = _fingerprint(cluster)
    assert {pod: ids[0] for pod, ids in after.items()} == {pod: ids[0] for pod, ids in before.items()}
    assert cluster.missing_keys(RELEASE, _journey_keys(KEYS)) == []


def test_upgrade_with_the_same_values_changes_nothing(cluster: Cluster, chart):
    before = _fingerprint(cluster)
    started = time.monotonic()
    cluster.helm("upgrade", RELEASE, *chart.install_args(), *cluster.values, "--wait", "--timeout", "15m")
    cluster.timed("upgrade, same values", started)
    assert _fingerprint(cluster) == before
    assert cluster.missing_keys(RELEASE, _journey_keys(KEYS)) == []


def test_upgrade_with_one_more_master_and_replica_moves_slots_and_keeps_keys(cluster: Cluster, chart):
    started = time.monotonic()
    cluster.helm(
        "upgrade",
        RELEASE,
        *chart.install_args(),
        *cluster.values,
        "--set",
        "cluster.masters=4",
        "--wait",
        "--timeout",
        "20m",
    )
    report = _wait_verified(cluster, 300)
    cluster.timed("scale-out 6 -> 8 pods -> verified", started)
    assert "16384 slots served by 4 masters" in json.dumps(report)
    assert cluster.missing_keys(RELEASE, _journey_keys(KEYS)) == []


def test_invalid_values_are_refused_before_anything_is_created(cluster: Cluster):
    bad = ROOT / "tests" / "chart" / "invalid"
    refused = cluster.helm(
        "install", "bad", str(CHART), "-f", str(sorted(bad.glob("*.yaml"))[0]), check=False
    )
    assert refused.returncode != 0
    leftovers = cluster.kubectl(
        "get", "all,pvc,configmap,secret", "-l", "app.kubernetes.io/instance=bad", "-o", "name"
    ).stdout
    assert leftovers.strip() == ""
    assert (
        cluster.run("kubectl", "get", "pv", "-l", "app.kubernetes.io/instance=bad", "-o", "name").stdout == ""
    )


def test_plugin_against_a_missing_release_exits_2_with_one_line(cluster: Cluster):
    done = cluster.plugin("verify", "no-such-release", check=False)
    assert done.returncode == 2
    ours = [line for line in done.stderr.splitlines() if not line.startswith('Error: plugin "redis" exited')]
    assert len(ours) == 1, done.stderr  # Helm itself adds its "plugin exited with error" line
    assert "no-such-release" in done.stderr and "Traceback" not in done.stderr


def test_uninstall_removes_the_pods_and_keeps_the_data_volumes(cluster: Cluster):
    cluster.helm("uninstall", RELEASE, "--wait", "--timeout", "5m")
    selector = f"app.kubernetes.io/instance={RELEASE}"
    deadline = time.monotonic() + 180
    while cluster.kubectl(
        "get", "pods", "-l", f"{selector},app.kubernetes.io/component=redis", "-o", "name"
    ).stdout.strip():
        assert time.monotonic() < deadline, "pods still there 180 s after uninstall"
        time.sleep(2)
    claims = cluster.kubectl("get", "pvc", "-o", "name").stdout.split()
    assert len([c for c in claims if "data-" in c]) == 8
    volumes = cluster.run("kubectl", "get", "pv", "-l", selector, "-o", "name").stdout.split()
    assert len(volumes) >= 8
