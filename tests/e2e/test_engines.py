"""The other engines on a real Kubernetes (issue 13): Valkey 8.1, Redis 8.0 and Valkey 9.1, each installed
with its `image.engine`, formed by the hook, tested by `helm test`, verified, and drilled (crash: the master
frozen, then its pod force-deleted) with no acknowledged write lost. The default engine runs the whole
journey (test_journey.py). Each image is the engine's Debian build at the pinned version
(ci/engines/engines.env), pushed by ci/images/build.sh under the public coordinates it stands in for."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from helm_redis.engine import read_server_infos
from helm_redis.release import open_release
from tests.engines import engine_names, pinned_value
from tests.kube import CHART, cluster_env, default_images

from .conftest import Cluster, chart_values, remove

pytestmark = pytest.mark.e2e
RELEASE = "engine"
OTHER_ENGINES = [name for name in engine_names() if pinned_value(name, "IMAGE") != default_images()["image"]]


def engine_values(name: str) -> list[str]:
    """`--set` flags for ENGINE's image (its coordinates from ci/engines/engines.env)."""
    repository, _, tag = pinned_value(name, "IMAGE").rpartition(":")
    family = name.split("-")[0]
    return [f"--set=image.engine={family}", f"--set=image.repository={repository}", f"--set=image.tag={tag}"]


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
    env, helm_home = cluster_env("rch-engine-helm-")
    run_id = uuid.uuid4().hex[:6]
    values = [*chart_values(env, run_id), *engine_values(name)]
    cluster = Cluster(f"rch-engine-{run_id}", {**env, "HELM_NAMESPACE": f"rch-engine-{run_id}"}, values)
    cluster.run("kubectl", "create", "namespace", cluster.namespace)
    try:
        started = time.monotonic()
        cluster.helm("install", RELEASE, str(CHART), *values, "--wait", "--timeout", "15m")
        cluster.helm("test", RELEASE, "--timeout", "5m")
        cluster.wait_verified(RELEASE, 300)
        cluster.timed(f"{name}: install -> helm test -> verified", started)
        assert server_versions(cluster) == {f"{name.split('-')[0]} {pinned_value(name, 'VERSION')}"}

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
