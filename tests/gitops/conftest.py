"""GitOps runs on a real Argo CD (ci/argocd: built from the Go module proxy, run as processes of this
machine) against a real cluster: the one ci/select-cluster.sh selects (tests/kube.py), the local one of
ci/k8s unless RCH_TEST_KUBECONFIG and RCH_TEST_CONTEXT name another. The Git source is a local repository
(file://) that these fixtures create from the chart. Nothing is simulated: without a cluster or Argo CD
these tests fail with the reason, they are never skipped."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml

from tests.kube import CHART, ROOT, cache_dir, cluster_env, exports, image_values

EXAMPLE = ROOT / "examples" / "argocd" / "application.yaml"
RELEASE = "redis"  # the Application's helm.releaseName
VALUES_FILE = "environments/test/redis-values.yaml"


def _run(env: dict[str, str], *args: str, check: bool = True, timeout: float = 300, **kw):
    done = subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=timeout, **kw)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


@dataclass
class ArgoCD:
    env: dict[str, str]
    namespace: str
    timings: dict[str, float] = field(default_factory=dict)

    def kubectl(self, *args: str, **kw) -> subprocess.CompletedProcess[str]:
        return _run(self.env, "kubectl", *args, **kw)

    def helm(self, *args: str, **kw) -> subprocess.CompletedProcess[str]:
        return _run(self.env, "helm", *args, **kw)

    def record(self, name: str, seconds: float) -> None:
        self.timings[name] = seconds
        print(f"\n[gitops] {name}: {seconds:.1f} s", flush=True)


@pytest.fixture(scope="session")
def argocd() -> Iterator[ArgoCD]:
    env, helm_home = cluster_env("rch-gitops-helm-")
    was_running = bool(exports(ROOT / "ci/argocd/env.sh"))
    started = time.monotonic()
    up = _run(env, str(ROOT / "ci/argocd/up.sh"), check=False, timeout=3600)
    print(up.stderr)
    if up.returncode != 0:
        raise RuntimeError(f"ci/argocd/up.sh failed ({up.returncode}):\n{up.stderr[-3000:]}")
    env.update(exports(ROOT / "ci/argocd/env.sh"))
    # The project's Helm (ci/bootstrap.sh) runs the plugin; Argo CD uses its own, on the repo-server's PATH.
    env["PATH"] = f"{cache_dir() / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    argo = ArgoCD(env, env.get("ARGOCD_NAMESPACE", "argocd"))
    argo.record(
        "Argo CD up (" + ("already running" if was_running else "started") + ")", time.monotonic() - started
    )
    try:
        argo.helm("plugin", "install", str(ROOT / "helm_plugin"), timeout=600)
        yield argo
    finally:
        print("\n[gitops] timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in argo.timings.items()))
        if not was_running and os.environ.get("RCH_KEEP_ARGOCD") != "1":
            _run(env, str(ROOT / "ci/argocd/down.sh"), check=False)
        shutil.rmtree(helm_home, ignore_errors=True)


class GitSource:
    """A local Git repository holding the chart and a values file, as a user's deployment repo would."""

    def __init__(self, path: Path, values: dict[str, Any]) -> None:
        self.path = path
        self.values = values
        self.env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "gitops test",
            "GIT_AUTHOR_EMAIL": "gitops@example.invalid",
            "GIT_COMMITTER_NAME": "gitops test",
            "GIT_COMMITTER_EMAIL": "gitops@example.invalid",
        }
        path.mkdir(parents=True)
        self.git("init", "--quiet", "--initial-branch=main")
        shutil.copytree(CHART, path / "charts" / "redis-cluster")
        self.commit("the redis-cluster chart and its values")

    @property
    def url(self) -> str:
        return self.path.as_uri()

    def git(self, *args: str) -> str:
        return _run(self.env, "git", "-C", str(self.path), *args).stdout.strip()

    def commit(self, message: str) -> str:
        target = self.path / VALUES_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(self.values, sort_keys=True))
        self.git("add", "--all")
        self.git("commit", "--quiet", "-m", message)
        return self.git("rev-parse", "HEAD")


def _deep_merge(values: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            _deep_merge(values[key], value)
        else:
            values[key] = value


def _deep_set(values: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        values = values.setdefault(key, {})
    values[leaf] = value


@dataclass
class App:
    """One Application of the example's shape, synced from the local repository into its namespace."""

    argo: ArgoCD
    name: str
    namespace: str
    source: GitSource

    def get(self) -> dict[str, Any]:
        done = self.argo.kubectl(
            "-n", self.argo.namespace, "get", "applications.argoproj.io", self.name, "-o", "json"
        )
        return json.loads(done.stdout)

    def kubectl(self, *args: str, **kw) -> subprocess.CompletedProcess[str]:
        return self.argo.kubectl("-n", self.namespace, *args, **kw)

    def refresh(self, kind: str = "hard") -> None:
        """What a Git webhook does: ask Argo CD to look at the repository now (no polling delay)."""
        self.argo.kubectl(
            "-n",
            self.argo.namespace,
            "annotate",
            "--overwrite",
            "applications.argoproj.io",
            self.name,
            f"argocd.argoproj.io/refresh={kind}",
        )

    def commit(self, message: str, **changes: Any) -> str:
        for dotted, value in changes.items():
            _deep_set(self.source.values, dotted.replace("__", "."), value)
        return self.source.commit(message)

    def wait(
        self, what: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 600
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        app: dict[str, Any] = {}
        while time.monotonic() < deadline:
            app = self.get()
            if predicate(app):
                return app
            time.sleep(1)
        raise AssertionError(f"{self.name}: not {what} within {timeout:.0f} s; status:\n{_brief(app)}")


def _brief(app: dict[str, Any]) -> str:
    status = app.get("status", {})
    op = status.get("operationState", {})
    return json.dumps(
        {
            "sync": status.get("sync"),
            "health": status.get("health"),
            "conditions": status.get("conditions"),
            "operation": {k: op.get(k) for k in ("phase", "message", "startedAt", "finishedAt")},
            "resources": [
                {k: r.get(k) for k in ("kind", "name", "status", "hookPhase", "message")}
                for r in op.get("syncResult", {}).get("resources", [])
            ],
            "unsynced": [
                {k: r.get(k) for k in ("kind", "name", "status", "health")}
                for r in status.get("resources", [])
                if r.get("status") != "Synced"
            ],
        },
        indent=1,
    )


@pytest.fixture(scope="module")
def app(argocd: ArgoCD, tmp_path_factory) -> Iterator[App]:
    env = argocd.env
    node = argocd.kubectl("get", "nodes", "-o", "jsonpath={.items[0].metadata.name}").stdout
    run_id = uuid.uuid4().hex[:6]
    values: dict[str, Any] = {}
    # The cluster's site values (the local one's DNS and API server are host processes, which the
    # NetworkPolicies must name): part of the deployment repository's values file, as a user's would be.
    if site := env.get("RCH_CLUSTER_VALUES"):
        _deep_merge(values, yaml.safe_load(Path(site).read_text()) or {})
    for key, value in image_values(env).items():
        _deep_set(values, key, value)
    host_dir = f"/var/lib/redis-cluster-gitops/{run_id}"
    _deep_set(values, "persistence.type", "hostPath")
    _deep_set(values, "persistence.hostPath.node", node)
    _deep_set(values, "persistence.hostPath.path", host_dir + "/{{ordinal}}")
    _deep_set(values, "volumePermissions.enabled", True)
    source = GitSource(tmp_path_factory.mktemp("gitops") / "deployments", values)
    namespace = f"rch-gitops-{run_id}"
    application = App(argocd, namespace, namespace, source)
    try:
        yield application
    finally:
        _delete_application(application)
        argocd.kubectl("delete", "namespace", namespace, "--wait=true", "--timeout=300s", check=False)
        kept = [
            pv
            for pv in argocd.kubectl("get", "pv", "-o", "name", check=False).stdout.split()
            if pv.startswith(f"persistentvolume/{namespace}-")
        ]
        if kept:
            argocd.kubectl("delete", "--wait=false", *kept, check=False)
        # The local cluster's node is this machine: remove the run's hostPath data there too.
        shutil.rmtree(host_dir, ignore_errors=True)


def _delete_application(app: App) -> None:
    """Cascade deletion through Argo CD (its finalizer); the finalizer is dropped if Argo CD is gone."""
    ns = app.argo.namespace
    app.argo.kubectl("-n", ns, "delete", "applications.argoproj.io", app.name, "--wait=false", check=False)
    done = app.argo.kubectl(
        "-n",
        ns,
        "wait",
        "--for=delete",
        f"applications.argoproj.io/{app.name}",
        "--timeout=300s",
        check=False,
    )
    if done.returncode != 0:
        app.argo.kubectl(
            "-n",
            ns,
            "patch",
            "applications.argoproj.io",
            app.name,
            "--type=merge",
            "-p",
            '{"metadata":{"finalizers":null}}',
            check=False,
        )


def application_manifest(app: App) -> dict[str, Any]:
    """The example Application (examples/argocd/application.yaml) pointed at the local repository."""
    manifest = yaml.safe_load(EXAMPLE.read_text())
    manifest["metadata"]["name"] = app.name
    manifest["metadata"]["namespace"] = app.argo.namespace
    source = manifest["spec"]["source"]
    source["repoURL"] = app.source.url
    source["targetRevision"] = "main"
    source["path"] = "charts/redis-cluster"
    source["helm"]["releaseName"] = RELEASE
    source["helm"]["valueFiles"] = [f"../../{VALUES_FILE}"]
    manifest["spec"]["destination"]["namespace"] = app.namespace
    return manifest


def open_redis(app: App) -> Any:
    """helm_redis' release target (port-forwards to every pod), as `helm redis` opens it: Argo CD
    creates no Helm release, so the shape comes from the chart's StatefulSet and redis.conf."""
    from helm_redis import release

    helm = shutil.which("helm", path=app.argo.env["PATH"]) or "helm"
    with mock.patch.dict(os.environ, {"HELM_BIN": helm}):
        return release.open_release(RELEASE, app.namespace, kubeconfig=app.argo.env.get("KUBECONFIG"))


def plugin_verify(app: App) -> dict[str, Any]:
    """`helm redis verify RELEASE -n NAMESPACE -o json`, the user's command, on the Argo CD application."""
    done = app.argo.helm("redis", "verify", RELEASE, "-n", app.namespace, "-o", "json", check=False)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"helm redis verify: no JSON ({done.returncode}):\n{done.stderr}") from None
    failing = [c for c in report.get("checks", []) if c.get("status") == "fail"]
    assert done.returncode == 0 and not failing, f"helm redis verify exited {done.returncode}: {failing}"
    return report
