"""The `helm-redis` console script as the tests run it: a real process, so a traceback would show."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HELM_REDIS = str(Path(sys.executable).with_name("helm-redis"))


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HELM_REDIS, *args], capture_output=True, text=True, timeout=timeout, check=False)


def assert_one_line_exit_2(done: subprocess.CompletedProcess[str]) -> str:
    """Exit 2, exactly one line on stderr, no traceback anywhere; returns that line."""
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]
