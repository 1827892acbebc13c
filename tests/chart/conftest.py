"""Fixtures of the chart tests; the helpers live in chartlib.py beside this file."""

from __future__ import annotations

import pytest

from .chartlib import Renderer, refusal, scenario_values, tool


@pytest.fixture(scope="session")
def helm() -> str:
    return tool("helm")


@pytest.fixture(scope="session")
def helm3() -> str:
    return tool("helm3")


@pytest.fixture(scope="session")
def renderer(helm: str) -> Renderer:
    return Renderer(helm)


@pytest.fixture(scope="session")
def rendered(renderer: Renderer):
    """Objects of a scenario of charts/redis-cluster/ci, by scenario name."""
    return lambda name: renderer.render(scenario_values(name))


@pytest.fixture
def refused(tmp_path):
    """stderr of a render of these values that must fail (and print nothing)."""

    def render(values_yaml: str, *extra: str, helm_name: str = "helm") -> str:
        path = tmp_path / "values.yaml"
        path.write_text(values_yaml)
        return refusal(path, *extra, helm_name=helm_name)

    return render
