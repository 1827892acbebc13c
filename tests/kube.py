"""What the Kubernetes-level suites (e2e, gitops) share: the cluster's environment and a Helm home of
their own. Nothing here is simulated: without a reachable cluster they fail with the reason.

The cluster is chosen by ci/select-cluster.sh, never implicitly: the local one (ci/k8s) by default, another
one only when RCH_TEST_KUBECONFIG and RCH_TEST_CONTEXT name it. The caller's KUBECONFIG, ~/.kube/config
and HELM_KUBE* variables are dropped before anything runs."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

from tests.paths import ROOT, cache_dir

__all__ = [
    "CHART",
    "ROOT",
    "cache_dir",
    "cluster_env",
    "default_images",
    "exports",
    "image_values",
    "select_cluster",
]
CHART = ROOT / "charts" / "redis-cluster"


def default_images() -> dict[str, str]:
    """The images a default install runs: values key prefix -> repository:tag (the tools tag is the
    chart's appVersion)."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    redis, tools = values["image"], values["tools"]["image"]
    return {
        "image": f"{redis['repository']}:{redis['tag']}",
        "tools.image": f"{tools['repository']}:{tools['tag'] or chart['appVersion']}",
    }


def image_values(env: dict[str, str]) -> dict[str, str]:
    """`--set` values for the images of the cluster at hand: none when it runs the defaults (the local
    cluster pulls them from its registry); RCH_REDIS_IMAGE / RCH_TOOLS_IMAGE for another cluster."""
    given = {"image": env.get("RCH_REDIS_IMAGE"), "tools.image": env.get("RCH_TOOLS_IMAGE")}
    values: dict[str, str] = {}
    for prefix, default in default_images().items():
        image = given[prefix] or default
        if image != default:
            repository, _, tag = image.rpartition(":")
            values |= {f"{prefix}.repository": repository, f"{prefix}.tag": tag}
    return values


def exports(script: Path) -> dict[str, str]:
    """`export K=V` lines printed by an env.sh script (empty when what it describes does not run)."""
    out = subprocess.run([str(script)], capture_output=True, text=True, check=False).stdout
    env: dict[str, str] = {}
    for line in out.splitlines():
        if line.startswith("unset "):
            continue  # the HELM_KUBE* variables of ci/select-cluster.sh: cluster_env drops them anyway
        for assignment in shlex.split(line.removeprefix("export ")):
            key, _, value = assignment.partition("=")
            env[key] = value.replace("$PATH", env.get("PATH", os.environ.get("PATH", "")))
    return env


def _without_implicit_cluster(environ: dict[str, str]) -> dict[str, str]:
    """The environment without anything that picks a cluster or context implicitly."""
    return {
        k: v
        for k, v in environ.items()
        if k != "KUBECONFIG" and not k.startswith(("HELM_KUBE", "KUBERNETES_SERVICE_"))
    }


def select_cluster(kubeconfig_dir: Path) -> dict[str, str]:
    """The exports of ci/select-cluster.sh (an explicit context's kubeconfig is written to kubeconfig_dir);
    RuntimeError with its one line when it refuses. Contacts no cluster."""
    done = subprocess.run(
        [str(ROOT / "ci/select-cluster.sh"), str(kubeconfig_dir)],
        env=_without_implicit_cluster(dict(os.environ)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip() or f"ci/select-cluster.sh exited {done.returncode}")
    env: dict[str, str] = {}
    for line in done.stdout.splitlines():
        if line.startswith("unset "):
            continue  # the HELM_KUBE* variables it names are dropped in any case
        for assignment in shlex.split(line.removeprefix("export ")):
            key, _, value = assignment.partition("=")
            env[key] = value.replace("$PATH", env.get("PATH", os.environ.get("PATH", "")))
    return env


def cluster_env(helm_home_prefix: str) -> tuple[dict[str, str], Path]:
    """The environment for kubectl, helm and the plugin: the selected cluster only (select_cluster), and a
    Helm home of its own (so `helm plugin install` never touches the user's)."""
    # Not pytest's tmp_path: a later pytest session may prune it while a long journey still runs.
    helm_home = Path(tempfile.mkdtemp(prefix=helm_home_prefix))
    try:
        env = {**_without_implicit_cluster(dict(os.environ)), **select_cluster(helm_home)}
        probe = subprocess.run(
            ["kubectl", "version", "--request-timeout=10s"], env=env, capture_output=True, text=True
        )
        if probe.returncode != 0:
            raise RuntimeError(
                f"the selected cluster ({env['KUBECONFIG']}) does not answer: {probe.stderr.strip()}"
            )
    except BaseException:
        shutil.rmtree(helm_home, ignore_errors=True)
        raise
    # Helm 4 installs local plugins under $HELM_DATA_HOME/plugins whatever HELM_PLUGINS says: keep them equal.
    env.update(
        HELM_DATA_HOME=str(helm_home / "data"),
        HELM_PLUGINS=str(helm_home / "data" / "plugins"),
        HELM_CACHE_HOME=str(helm_home / "cache"),
        HELM_CONFIG_HOME=str(helm_home / "config"),
    )
    return env, helm_home
