"""Fixtures: real redis-server processes on loopback (distinct 127.0.B.x addresses stand in for pod IPs)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from helm_redis.localnodes import LocalNodes

if shutil.which("redis-server") is None:  # pragma: no cover - bootstrap installs it
    raise RuntimeError("redis-server is not installed: run `make bootstrap` (ci/bootstrap.sh)")


@pytest.fixture
def make_nodes(tmp_path: Path) -> Iterator[Callable[..., LocalNodes]]:
    """Start sets of fresh cluster-mode nodes; every process is killed at the end of the test."""
    started: list[LocalNodes] = []

    def make(count: int, **options: object) -> LocalNodes:
        nodes = LocalNodes(tmp_path / f"set-{len(started)}", count, **options)  # type: ignore[arg-type]
        started.append(nodes)
        nodes.start()
        return nodes

    yield make
    for nodes in started:
        nodes.stop(kill=True)


@pytest.fixture
def cluster(make_nodes) -> LocalNodes:
    """Six nodes formed into 3 masters with one replica each."""
    from .helpers import form

    nodes = make_nodes(6)
    form(nodes, 3, 1, timeout=60)
    return nodes
