"""The other engines on a real Kubernetes (issue 13): Valkey 8.1, Redis 8.0 and Valkey 9.1, each installed
with its `image.engine`, formed by the hook, tested by `helm test`, verified, and drilled (crash: the master
frozen, then its pod force-deleted) with no acknowledged write lost. The default engine runs the whole
journey (test_journey.py). Each image is the engine's Debian build at the pinned version
(ci/engines/engines.env), pushed by ci/images/build.sh under the public coordinates it stands in for.

Then the moves between engines: a release of the default engine (Redis 7.0) moved to Valkey 9.1 and to
Redis 8.0 by `helm upgrade` of its image, under the drill's write load, rolling; and the way back refused
by the pre-upgrade hook before anything changes."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from helm_redis.engine import read_server_infos
from helm_redis.release import open_release
from tests.engines import engine_names, pinned_value
from tests.kube import CHART, cluster_env, default_images

from .conftest import Cluster, assert_writable_throughout, chart_values, remove

pytestmark = pytest.mark.e2e
RELEASE = "engine"
DEFAULT_ENGINE = "redis-7.0"
OTHER_ENGINES = [name for name in engine_names() if pinned_value(name, "IMAGE") != default_images()["image"]]
# Where a release of the default engine can move (helm_redis.engine_move allows it; README engine table).
MOVES = [name for name in ("valkey-9.1", "redis-8.0") if name in OTHER_ENGINES]
DATASET_KEYS = 20_000
MAX_UNWRITABLE_SECONDS = 2.0  # as in test_rollout.py: every master hands over, no node-timeout failover


def engine_values(name: str) -> list[str]:
    """`--set` flags for ENGINE's image (its coordinates from ci/engines/engines.env)."""
    repository, _, tag = pinned_value(name, "IMAGE").rpartition(":")
    family = name.split("-")[0]
    return [f"--set=image.engine={family}", f"--set=image.repository={repository}", f"--set=image.tag={tag}"]


def version_of(name: str) -> str:
    """'valkey 9.1.2': how helm_redis.engine names the pinned engine NAME."""
    return f"{name.split('-')[0]} {pinned_value(name, 'VERSION')}"


def new_namespace(purpose: str) -> tuple[Cluster, Path]:
    """A Cluster on a namespace of its own, with this run's chart values, and its Helm home."""
    env, helm_home = cluster_env(f"rch-{purpose}-helm-")
    run_id = uuid.uuid4().hex[:6]
    cluster = Cluster(
        f"rch-{purpose}-{run_id}",
        {**env, "HELM_NAMESPACE": f"rch-{purpose}-{run_id}"},
        chart_values(env, run_id),
    )
    cluster.run("kubectl", "create", "namespace", cluster.namespace)
    return cluster, helm_home


def server_versions(cluster: Cluster) -> set[str]:
    """Every node's engine and version as the tools detect them (helm_redis.engine: Valkey's own version,
    never its redis_version 7.2.4)."""
    target = open_release(RELEASE, cluster.namespace, kubeconfig=cluster.env.get("KUBECONFIG"))
    try:
        infos = read_server_infos(target.connector, [m.address for m in target.members])
        return {str(info) for info in infos.values()}
    finally:
        target.close()


@pytest.mark.parametrize("name", OTHER_ENGINES)
def test_engine_installs_verifies_and_survives_a_crash_drill(name: str):
    cluster, helm_home = new_namespace("engine")
    try:
        started = time.monotonic()
        cluster.helm(
            "install",
            RELEASE,
            str(CHART),
            *cluster.values,
            *engine_values(name),
            "--wait",
            "--timeout",
            "15m",
        )
        cluster.helm("test", RELEASE, "--timeout", "5m")
        cluster.wait_verified(RELEASE, 300)
        cluster.timed(f"{name}: install -> helm test -> verified", started)
        assert server_versions(cluster) == {version_of(name)}

        started = time.monotonic()
        done = cluster.helm_redis("drill", RELEASE, "--mode", "crash", "--output", "json", "--timeout", "300")
        cluster.timed(f"{name}: crash drill", started)
        report = json.loads(done.stdout or "{}")
        print(
            f"\n[e2e] {name} crash drill: exit {done.returncode}, outcome {report.get('outcome')!r}, "
            f"promotion {report.get('promotion_seconds')} s, writes {report.get('writes')}"
        )
        assert done.returncode == 0 and report["ok"], (report.get("problems"), done.stderr[-3000:])
        assert report["writes"]["lost_acknowledged"] == 0 and report["writes"]["acknowledged"] > 0
        cluster.wait_verified(RELEASE, 300)
    finally:
        remove(cluster, [RELEASE], helm_home)


def hook_termination_messages(cluster: Cluster) -> str:
    """What the pre-upgrade hook's pods say in their status (terminationMessagePolicy FallbackToLogsOnError:
    the last log lines of a failed run), as `kubectl describe` and Argo CD show it."""
    return cluster.kubectl(
        "get",
        "pods",
        "-l",
        f"job-name={RELEASE}-redis-cluster-init-scale-in",
        "-o",
        "jsonpath={range .items[*]}{range .status.containerStatuses[*]}{.state.terminated.message}{end}{end}",
        check=False,
    ).stdout


def statefulset_image(cluster: Cluster) -> str:
    return cluster.kubectl(
        "get",
        "statefulset",
        f"{RELEASE}-redis-cluster",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ).stdout


@pytest.mark.parametrize("name", MOVES)
def test_move_from_the_default_engine_by_helm_upgrade_under_write_load_and_no_way_back(name: str):
    cluster, helm_home = new_namespace("move")
    try:
        cluster.helm("install", RELEASE, str(CHART), *cluster.values, "--wait", "--timeout", "15m")
        cluster.wait_verified(RELEASE, 300)
        assert server_versions(cluster) == {version_of(DEFAULT_ENGINE)}
        data = {f"before-move:{i}": f"value-{i}-" + "x" * 200 for i in range(DATASET_KEYS)}
        cluster.write_keys(RELEASE, data)
        ids = cluster.node_ids(RELEASE)

        started = time.monotonic()
        with cluster.write_load(RELEASE) as result:
            cluster.helm(
                "upgrade",
                RELEASE,
                str(CHART),
                "--reuse-values",
                *engine_values(name),
                "--wait",
                "--timeout",
                "15m",
            )
            cluster.rollout_finished(f"{RELEASE}-redis-cluster")
            cluster.wait_verified(RELEASE, 300)
        cluster.timed(f"{DEFAULT_ENGINE} -> {name}: helm upgrade under write load -> verified", started)
        what = f"move {DEFAULT_ENGINE} -> {name}"
        assert_writable_throughout(cluster, RELEASE, what, result, ids, MAX_UNWRITABLE_SECONDS)
        assert server_versions(cluster) == {version_of(name)}
        assert cluster.missing_keys(RELEASE, data) == []
        moved_image = statefulset_image(cluster)

        # The way back: the pre-upgrade hook refuses it before the StatefulSet changes, naming why.
        started = time.monotonic()
        back = cluster.helm(
            "upgrade",
            RELEASE,
            str(CHART),
            "--reuse-values",
            *engine_values(DEFAULT_ENGINE),
            "--timeout",
            "5m",
            check=False,
        )
        cluster.timed(f"{name} -> {DEFAULT_ENGINE}: refused", started)
        said = hook_termination_messages(cluster)
        print(f"[e2e] helm upgrade back exited {back.returncode}: {back.stderr.strip()[-300:]}")
        print(f"[e2e] hook: {said}")
        assert back.returncode != 0
        assert f"{version_of(DEFAULT_ENGINE)} cannot load" in said and version_of(name) in said, said
        assert statefulset_image(cluster) == moved_image
        assert server_versions(cluster) == {version_of(name)}
        assert cluster.node_ids(RELEASE) == ids
        cluster.wait_verified(RELEASE, 120)
    finally:
        remove(cluster, [RELEASE], helm_home)
