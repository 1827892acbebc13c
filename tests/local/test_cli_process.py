"""`helm-redis` as a real process against real nodes that fail: one line on stderr, exit 2, no traceback.

CliRunner runs the app inside pytest and never prints a traceback, so these tests start the console script.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.cli import assert_one_line_exit_2
from tests.cli import run_cli as run
from tests.local.helpers import TEST_USERS

pytestmark = pytest.mark.redis


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _spare_port() -> int:
    """A port for a set of local nodes, away from 6379: other test runs on this machine start their
    nodes on the same 127.0.B.x addresses at 6379, and a node that cannot bind leaves theirs answering."""
    for _ in range(100):
        port = random.randrange(20000, 30000)
        try:
            for candidate in (port, port + 10000):
                socket.create_server(("127.0.0.1", candidate)).close()
        except OSError:
            continue
        return port
    raise RuntimeError("no spare port pair found")


@pytest.fixture
def standalone_node(tmp_path) -> Iterator[str]:
    """A redis-server not in cluster mode (`cluster-enabled no`): it answers, but CLUSTER commands fail."""
    port = _free_port()
    server = shutil.which("redis-server") or "redis-server"
    options = ["--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(
        [server, *options, "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait(timeout=30)


def test_verify_against_a_port_where_nothing_listens():
    line = assert_one_line_exit_2(run("verify", "--nodes", f"127.0.0.1:{_free_port()}"))

    assert line.startswith("error: no node answered") and "Connection refused" in line


def test_verify_against_a_node_not_in_cluster_mode(standalone_node):
    line = assert_one_line_exit_2(run("verify", "--nodes", standalone_node))

    assert "cluster support disabled" in line


def test_init_against_a_node_not_in_cluster_mode_fails_at_once(standalone_node):
    """An error reply is final: the hook does not wait its whole timeout for it to go away."""
    started = time.monotonic()
    line = assert_one_line_exit_2(run("init", "--nodes", standalone_node, "-r", "0", "--timeout", "60"))

    assert "cluster support disabled" in line
    assert time.monotonic() - started < 20


def test_init_with_a_wrong_password(make_nodes, tmp_path):
    nodes = make_nodes(3, users=TEST_USERS, port=_spare_port())
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")

    line = assert_one_line_exit_2(
        run(
            "init",
            "--nodes",
            nodes.nodes_option(),
            "--user",
            "admin",
            "--password-file",
            str(wrong),
            "-r",
            "0",
        )
    )

    assert "password" in line
    assert "not-the-password" not in line


def test_init_when_a_node_refuses_a_command_half_way(make_nodes):
    # The nodes answer every read, then refuse to take slots: an error in the middle of the formation.
    nodes = make_nodes(3, port=_spare_port())
    for node in nodes.nodes:
        node.client().execute_command("ACL", "SETUSER", "default", "-cluster|addslotsrange")

    done = run("init", "--nodes", nodes.nodes_option(), "--masters", "3", "-r", "0", "--timeout", "30")

    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr  # progress lines came before it, as the hook's log shows them
    assert "NOPERM" in errors[0] and "cluster|addslotsrange" in errors[0]
    assert done.stderr.strip().splitlines()[-1] == errors[0]


def test_a_failed_check_still_exits_1_through_the_console_script(make_nodes):
    nodes = make_nodes(3, port=_spare_port())  # never formed: every node knows only itself

    done = run("verify", "--nodes", nodes.nodes_option(), "--read-only")

    assert done.returncode == 1, done.stderr
    assert "NOT healthy" in done.stdout and "Traceback" not in done.stdout + done.stderr
