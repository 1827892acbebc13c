"""Paths every test shares. The tool cache follows ONE rule (ci/cache.sh and the Makefile spell the same):
RCH_CACHE, else $XDG_CACHE_HOME/redis-cluster-helm, else ~/.cache/redis-cluster-helm."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cache_dir() -> Path:
    """The project's tool cache (ci/bootstrap.sh puts helm, helm3 and ct in its bin/)."""
    if os.environ.get("RCH_CACHE"):
        return Path(os.environ["RCH_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "redis-cluster-helm"
