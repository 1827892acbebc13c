"""Static PVs (hostPath here, NFS alike) bind as their pods are scheduled: installs of 8 pods, repeated,
never leave a pod Pending on an "unbound immediate PersistentVolumeClaim" (measured before the release's
storage class was WaitForFirstConsumer: one pod of 8 stayed Pending 5 min 12 s, until the scheduler's
periodic retry)."""

from __future__ import annotations

import time

import pytest

from tests.kube import CHART

from .conftest import VOLUME_ROOT, Cluster

pytestmark = pytest.mark.e2e
RELEASE = "pvbind"
ROUNDS = 2
# Far below the scheduler's 5-minute retry of unschedulable pods, far above a normal install here.
INSTALL_TIMEOUT = "150s"


def _remove_volumes(cluster: Cluster) -> None:
    selector = f"app.kubernetes.io/instance={RELEASE}"
    cluster.kubectl("delete", "pvc", "-l", selector, "--wait=true", "--timeout=120s")
    cluster.run("kubectl", "delete", "pv,storageclass", "-l", selector, "--wait=true", "--timeout=120s")


@pytest.mark.parametrize("round_", range(1, ROUNDS + 1))
def test_eight_pods_on_static_volumes_are_scheduled_at_once(cluster: Cluster, round_: int):
    path = f"{VOLUME_ROOT}/{cluster.namespace}/{{{{release}}}}/{round_}/{{{{ordinal}}}}"
    started = time.monotonic()
    try:
        cluster.helm(
            "install",
            RELEASE,
            str(CHART),
            *cluster.values,
            "--set",
            f"persistence.hostPath.path={path}",
            "--set",
            "cluster.masters=4",
            "--wait",
            "--timeout",
            INSTALL_TIMEOUT,
        )
        cluster.timed(f"8 pods on static PVs, round {round_}: installed, formed", started)
        pending = cluster.kubectl(
            "get",
            "pods",
            "-l",
            f"app.kubernetes.io/instance={RELEASE}",
            "--field-selector",
            "status.phase=Pending",
            "-o",
            "name",
        ).stdout.strip()
        assert pending == ""
        claims = cluster.kubectl(
            "get",
            "pvc",
            "-l",
            f"app.kubernetes.io/instance={RELEASE}",
            "-o",
            "jsonpath={range .items[*]}{.status.phase}{'\\n'}{end}",
        ).stdout.split()
        assert claims == ["Bound"] * 8
    finally:
        cluster.helm("uninstall", RELEASE, "--wait", "--timeout", "3m", check=False)
        _remove_volumes(cluster)
