"""One tool-cache rule for every script, the Makefile and the tests: RCH_CACHE, else
$XDG_CACHE_HOME/redis-cluster-helm, else ~/.cache/redis-cluster-helm (ci/cache.sh, Makefile,
tests/paths.py), and nothing else spells it."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.paths import ROOT, cache_dir

DEFINITIONS = {ROOT / "ci" / "cache.sh", ROOT / "Makefile", ROOT / "tests" / "paths.py"}
CASES = [
    ({"RCH_CACHE": "/given", "XDG_CACHE_HOME": "/xdg"}, "/given"),
    ({"XDG_CACHE_HOME": "/xdg"}, "/xdg/redis-cluster-helm"),
    ({"XDG_CACHE_HOME": ""}, "{home}/.cache/redis-cluster-helm"),
    ({}, "{home}/.cache/redis-cluster-helm"),
]


def _env(tmp_path: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RCH_CACHE", "XDG_CACHE_HOME", "MAKEFLAGS")}
    return {**env, "HOME": str(tmp_path), **extra}


@pytest.mark.parametrize(("extra", "expected"), CASES)
def test_shell_makefile_and_python_agree(tmp_path, monkeypatch, extra, expected):
    env = _env(tmp_path, extra)
    want = expected.format(home=tmp_path)
    shell = subprocess.run(
        ["bash", "-c", 'source ci/cache.sh && echo "$RCH_CACHE"'],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert shell.stdout.strip() == want
    # -n -p: print make's variables without running anything.
    make = subprocess.run(["make", "-n", "-p", "clean"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert re.search(rf"^RCH_CACHE := {re.escape(want)}$", make.stdout, re.M), make.stderr
    for key in ("RCH_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    for key, value in extra.items():
        monkeypatch.setenv(key, value)
    assert str(cache_dir()) == want


def test_no_other_file_spells_the_cache_path():
    files = [*ROOT.glob("ci/**/*.sh"), *ROOT.glob("ci/*.mk"), *ROOT.glob("tests/**/*.py"), ROOT / "Makefile"]
    offenders = [
        str(f.relative_to(ROOT))
        for f in files
        if f not in DEFINITIONS
        and f.name != Path(__file__).name
        and re.search(r"\.cache/redis-cluster-helm|XDG_CACHE_HOME", f.read_text())
    ]
    assert offenders == []
