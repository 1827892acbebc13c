"""Helpers of the chart tests: paths, the tools, rendering through pyhelm3, picking objects."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyhelm3
import pytest
import yaml

from tests.paths import cache_dir

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "redis-cluster"
SCENARIOS = sorted(p.name.removesuffix("-values.yaml") for p in (CHART / "ci").glob("*-values.yaml"))
INVALID = sorted((Path(__file__).parent / "invalid").glob("*.yaml"))
RELEASE = "redis"
NAMESPACE = "redis-ns"


def tool(name: str) -> str:
    """A pinned tool from PATH or from the bootstrap cache; a missing tool fails the test (never a skip)."""
    cache = cache_dir() / "bin"
    found = shutil.which(name) or shutil.which(name, path=str(cache))
    if not found:
        pytest.fail(f"{name} not found on PATH nor in {cache}: run `make bootstrap` (ci/bootstrap.sh)")
    return found


def tool_env(**extra: str) -> dict[str, str]:
    """Environment for helm/ct: the venv (yamllint, yamale) and the tool cache on PATH, no cluster."""
    env = dict(os.environ)
    venv_bin = REPO / ".venv" / "bin"
    cache = cache_dir() / "bin"
    env["PATH"] = os.pathsep.join([str(venv_bin), str(cache), env.get("PATH", "")])
    env["KUBECONFIG"] = os.devnull  # rendering and linting never reach a cluster
    env.update(extra)
    return env


def run(
    cmd: list[str], *, cwd: Path = REPO, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env or tool_env(), capture_output=True, text=True, timeout=300)


def template_cmd(helm: str, values_file: Path, *extra: str) -> list[str]:
    """`helm template` of the chart as the tests render it: release RELEASE in NAMESPACE, these values."""
    chart = [helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    return [*chart, "--values", str(values_file), *extra]


def refusal(values_file: Path, *extra: str, helm_name: str = "helm") -> str:
    """stderr of a render of this values file that must fail, printing nothing on stdout."""
    result = run(template_cmd(tool(helm_name), values_file, *extra))
    assert result.returncode != 0, f"accepted:\n{values_file.read_text()}"
    assert result.stdout == ""
    return result.stderr


def scenario_file(name: str) -> Path:
    return CHART / "ci" / f"{name}-values.yaml"


def scenario_values(name: str) -> dict[str, Any]:
    return yaml.safe_load(scenario_file(name).read_text()) or {}


def default_values() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def merged_values(overrides: dict[str, Any]) -> dict[str, Any]:
    """values.yaml with overrides applied the way Helm coalesces maps."""

    def merge(base: dict, over: dict) -> dict:
        out = dict(base)
        for k, v in over.items():
            out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        return out

    return merge(default_values(), overrides)


class Renderer:
    """Renders the chart through pyhelm3 (`helm template`) with Helm 4, caching by values."""

    def __init__(self, helm: str) -> None:
        self.client = pyhelm3.Client(executable=helm)
        self.chart = asyncio.run(self.client.get_chart(CHART))
        self._cache: dict[tuple[str, str, str], list[dict[str, Any]]] = {}

    def render(
        self, values: dict[str, Any], *, release: str = RELEASE, namespace: str = NAMESPACE
    ) -> list[dict[str, Any]]:
        key = (yaml.safe_dump(values, sort_keys=True), release, namespace)
        if key not in self._cache:
            resources = asyncio.run(
                self.client.template_resources(self.chart, release, values, namespace=namespace)
            )
            self._cache[key] = [r for r in resources if r]
        return self._cache[key]


# --- picking objects -------------------------------------------------------------------------------


def pod_specs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod spec(s) an object runs: a Pod's, a workload's template (a CronJob's job template's)."""
    spec = obj.get("spec", {})
    if obj["kind"] == "Pod":
        return [spec]
    spec = spec.get("jobTemplate", {}).get("spec", spec)
    return [spec["template"]["spec"]] if "template" in spec else []


def containers_of(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """Every container and init container of the pods an object runs."""
    return [c for spec in pod_specs(obj) for c in spec.get("containers", []) + spec.get("initContainers", [])]


def images_of(objs: Iterable[dict[str, Any]]) -> set[str]:
    """Every image the objects' pods run."""
    return {c["image"] for obj in objs for c in containers_of(obj)}


def of_kind(objs: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: Iterable[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in of_kind(objs, kind) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, (
        f"expected one {kind} {name or ''}, found {[o['metadata']['name'] for o in found]}"
    )
    return found[0]


def hooks(objs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objs if "helm.sh/hook" in o["metadata"].get("annotations", {})]


def container(pod_spec: dict[str, Any], name: str, *, init: bool = False) -> dict[str, Any]:
    key = "initContainers" if init else "containers"
    found = [c for c in pod_spec.get(key, []) if c["name"] == name]
    assert len(found) == 1, (
        f"expected one {key[:-1]} {name!r} in {[c['name'] for c in pod_spec.get(key, [])]}"
    )
    return found[0]


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    """A container's env as {name: value or valueFrom}."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())
