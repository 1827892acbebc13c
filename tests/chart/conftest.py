"""Fixtures of the chart tests; the helpers live in chartlib.py beside this file."""

from __future__ import annotations

import pytest

from .chartlib import Renderer, scenario_values, tool


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
