"""What the Kubernetes-level suites (e2e, gitops) share: the cluster's environment and a Helm home of
their own. Nothing here is simulated: without a reachable cluster they fail with the reason."""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "redis-cluster"


def exports(script: Path) -> dict[str, str]:
    """`export K=V` lines printed by an env.sh script (empty when what it describes does not run)."""
    out = subprocess.run([str(script)], capture_output=True, text=True, check=False).stdout
    env: dict[str, str] = {}
    for line in out.splitlines():
        for assignment in shlex.split(line.removeprefix("export ")):
            key, _, value = assignment.partition("=")
            env[key] = value.replace("$PATH", env.get("PATH", os.environ.get("PATH", "")))
    return env


def cluster_env(helm_home_prefix: str) -> tuple[dict[str, str], Path]:
    """The environment for kubectl and helm: the configured cluster, or the local one (ci/k8s/env.sh),
    and a Helm home of its own (so `helm plugin install` never touches the user's)."""
    env = {**os.environ, **exports(ROOT / "ci/k8s/env.sh")}
    probe = subprocess.run(
        ["kubectl", "version", "--request-timeout=10s"], env=env, capture_output=True, text=True
    )
    if probe.returncode != 0:
        raise RuntimeError(
            f"no reachable Kubernetes (run `make k8s-up` or set KUBECONFIG): {probe.stderr.strip()}"
        )
    # Not pytest's tmp_path: a later pytest session may prune it while a long journey still runs.
    helm_home = Path(tempfile.mkdtemp(prefix=helm_home_prefix))
    # Helm 4 installs local plugins under $HELM_DATA_HOME/plugins whatever HELM_PLUGINS says: keep them equal.
    env.update(
        HELM_DATA_HOME=str(helm_home / "data"),
        HELM_PLUGINS=str(helm_home / "data" / "plugins"),
        HELM_CACHE_HOME=str(helm_home / "cache"),
        HELM_CONFIG_HOME=str(helm_home / "config"),
    )
    return env, helm_home
