"""The chart's probe and preStop scripts (files/*.sh) under dash, the Redis image's /bin/sh, against a real
redis-server on loopback configured like a chart node with auth: `default` off, user admin with a hashed
password. What they must do: log in with the first line of the password file the node accepts (a
rotation puts two there), never print a password, and stay bounded."""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from .chartlib import CHART, one

pytestmark = [pytest.mark.chart, pytest.mark.redis]

FILES = CHART / "files"
OLD, NEW = "old-Passw0rd-1", "new-Passw0rd-2"


def _binary(name: str) -> str:
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: run `make bootstrap` (ci/bootstrap.sh)")
    return found


def _free_port() -> int:
    """A free client port whose cluster bus port (+10000) is free too."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    pytest.fail("no free pair of ports")


def _cli(port: int, *args: str, password: str | None = NEW) -> str:
    env = {**os.environ, "REDISCLI_AUTH": password} if password else dict(os.environ)
    cmd = [_binary("redis-cli"), "--no-auth-warning", "-p", str(port)]
    if password:
        cmd += ["--user", "admin"]
    return subprocess.run([*cmd, *args], env=env, capture_output=True, text=True, timeout=10).stdout


@contextmanager
def _redis(directory: Path, cluster: bool = True) -> Iterator[int]:
    """A redis-server whose admin accepts NEW only, as the chart's include sets it up; yields its port."""
    port = _free_port()
    digest = hashlib.sha256(NEW.encode()).hexdigest()
    conf = f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
    conf += f"user default off\nuser admin on #{digest} ~* &* +@all\n"
    if cluster:
        conf += f"cluster-enabled yes\ncluster-config-file {directory}/nodes.conf\n"
    with serving(directory, conf, lambda: "NOAUTH" in _cli(port, "ping", password=None)):
        yield port


@contextmanager
def serving(directory: Path, conf: str, answers: Callable[[], bool]) -> Iterator[None]:
    """redis-server with `conf` (written to directory/redis.conf), once `answers()` (at most 5 s); stopped
    on exit."""
    (directory / "redis.conf").write_text(conf)
    proc = subprocess.Popen(
        [_binary("redis-server"), str(directory / "redis.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            if answers():
                break
            assert proc.poll() is None, "redis-server exited"
            time.sleep(0.05)
        else:
            pytest.fail("redis-server did not start")
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[int]:
    """A cluster-mode node, not in a cluster yet."""
    with _redis(tmp_path) as port:
        yield port


def run_script(name: str, port: int, tmp_path: Path, lines: str | None, **env: str):
    """dash files/NAME with the chart's env; `lines` is the password file's content (None: no auth)."""
    full = {"PATH": os.environ["PATH"], "REDIS_PORT": str(port), **env}
    if lines is not None:
        secret = tmp_path / "admin-password"
        secret.write_text(lines)
        full |= {"REDIS_USERNAME": "admin", "REDIS_PASSWORD_FILE": str(secret)}
    started = time.monotonic()
    result = subprocess.run(
        [_binary("dash"), str(FILES / name)], env=full, capture_output=True, text=True, timeout=60
    )
    output = result.stdout + result.stderr
    assert OLD not in output and NEW not in output, "a script printed a password"
    return result.returncode, output, time.monotonic() - started


def auth_failures(port: int) -> int:
    """Failed logins the node recorded: ACL LOG entries of reason auth, with their repeat counts (the
    reply, one field or value per line, starts each entry with `count`)."""
    words = _cli(port, "acl", "log").splitlines()
    total = count = 0
    for key, value in itertools.pairwise(words):
        if key == "count":
            count = int(value)
        elif (key, value) == ("reason", "auth"):
            total += count
    return total


@pytest.mark.parametrize("lines", [f"{NEW}\n", f"{OLD}\n{NEW}\n", f"{OLD}\r\n\r\n{NEW}", f"  {NEW}  \n"])
def test_readiness_logs_in_with_the_first_accepted_line(node, tmp_path, lines):
    code, out, _ = run_script("readiness.sh", node, tmp_path, lines)
    assert (code, out) == (0, ""), "a node not in a cluster yet is ready once it answers PONG"


def test_readiness_tries_each_line_once_in_order_and_stops_at_the_accepted_one(node, tmp_path):
    run_script("readiness.sh", node, tmp_path, f"{NEW}\n{OLD}\n")
    assert auth_failures(node) == 0, "the second line is never tried once the first is accepted"
    code, out, _ = run_script("readiness.sh", node, tmp_path, f"{OLD}\nwrong\n{OLD}-3\n")
    assert code == 1 and out.startswith("no PONG: AUTH failed: WRONGPASS")
    assert auth_failures(node) == 3, "each line once, no more"


def test_readiness_without_a_password_file_says_authentication_is_required(node, tmp_path):
    code, out, _ = run_script("readiness.sh", node, tmp_path, None)
    assert code == 1 and out.startswith("no PONG: NOAUTH")


def test_prestop_logs_in_before_asking_the_node(node, tmp_path):
    code, out, _ = run_script("prestop.sh", node, tmp_path, f"{OLD}\n{NEW}\n", PRESTOP_TIMEOUT_SECONDS="5")
    assert code == 0
    assert out.strip().splitlines()[-1] == "prestop: this master serves no slots: nothing to hand over"


def test_liveness_takes_an_authentication_error_as_alive_without_reading_a_password(node, tmp_path):
    code, out, _ = run_script("liveness.sh", node, tmp_path, None)
    assert (code, out) == (0, "")
    code, out, _ = run_script("liveness.sh", node, tmp_path, "unreadable-on-purpose\n")
    assert (code, out) == (0, "")
    assert auth_failures(node) == 0, "the liveness probe never logs in"


def test_liveness_fails_when_nothing_answers(tmp_path):
    code, out, _ = run_script("liveness.sh", _free_port(), tmp_path, None)
    assert code == 1 and "Could not connect" in out


def test_liveness_is_bounded_below_the_probe_timeout(tmp_path):
    """A port that accepts and never answers (a hung node): dead, within the probe's timeout."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        held: list[socket.socket] = []
        stop = threading.Event()

        def accept() -> None:
            server.settimeout(0.1)
            while not stop.is_set():
                try:
                    held.append(server.accept()[0])
                except OSError:
                    continue

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        try:
            code, out, seconds = run_script("liveness.sh", port, tmp_path, None, LIVENESS_TIMEOUT_SECONDS="2")
        finally:
            stop.set()
            thread.join()
            for conn in held:
                conn.close()
    assert code == 1 and out.startswith(f"no answer from 127.0.0.1:{port} within 1.50 s")
    assert seconds < 2


@pytest.mark.parametrize("lines", [f"{OLD}\n{NEW}\n", f"{NEW}"])
def test_helm_test_pod_logs_in_with_the_first_accepted_line_and_round_trips(rendered, tmp_path, lines):
    """The rendered test pod's script, its node loop left out (PODS=0), against a standalone node."""
    pod = one(rendered("defaults"), "Pod")
    (c,) = pod["spec"]["containers"]
    secret = tmp_path / "admin-password"
    secret.write_text(lines)
    with _redis(tmp_path, cluster=False) as port:
        env = {e["name"]: e["value"] for e in c["env"] if "value" in e}
        env |= {"PATH": os.environ["PATH"], "PODS": "0", "REDIS_PASSWORD_FILE": str(secret), "HOSTNAME": "t"}
        env |= {"ACCESS_HOST": "127.0.0.1", "ACCESS_PORT": str(port)}
        result = subprocess.run(
            [_binary("dash"), *c["command"][1:]], env=env, capture_output=True, text=True, timeout=60
        )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert OLD not in out and NEW not in out
    assert out.splitlines() == ["logged in as admin", f"write/read round trip through 127.0.0.1:{port} ok"]


def test_helm_test_pod_fails_when_no_line_is_accepted(rendered, tmp_path):
    (c,) = one(rendered("defaults"), "Pod")["spec"]["containers"]
    secret = tmp_path / "admin-password"
    secret.write_text(f"{OLD}\n")
    with _redis(tmp_path, cluster=False) as port:
        env = {"PATH": os.environ["PATH"], "PODS": "0", "REDIS_USERNAME": "admin"}
        env |= {"REDIS_PASSWORD_FILE": str(secret), "ACCESS_HOST": "127.0.0.1", "ACCESS_PORT": str(port)}
        result = subprocess.run(
            [_binary("dash"), *c["command"][1:]], env=env, capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 1
    assert result.stdout.strip() == f"no line of {secret} logs user admin in at 127.0.0.1:{port}"
    assert OLD not in result.stdout + result.stderr
