"""Shared by every suite: parallel workers (pytest-xdist, `-n`) split the loopback blocks of local nodes."""

from __future__ import annotations

import os

from helm_redis import localnodes


def pytest_configure(config) -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER")  # gw0, gw1, ... in a worker; unset otherwise
    if worker:
        localnodes.share_blocks(int(worker.removeprefix("gw")), int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
