"""The console script as people and the hook's pods meet it: a real `helm-redis` process, its stderr and exit
code. (CliRunner calls the Typer app inside pytest: it never shows the traceback or the boxed usage that a
real process prints, so these tests run the installed script.)"""

from __future__ import annotations

import os
import signal
import socket
import subprocess

import pytest

from tests.cli import HELM_REDIS, assert_one_line_exit_2
from tests.cli import run_cli as run

# --- usage errors: one line, exit 2 ---------------------------------------------------------------------


def test_an_unknown_flag_is_one_line_naming_it_and_the_help(tmp_path):
    line = assert_one_line_exit_2(run("verify", "--bogus"))

    # Click may add "(Possible options: ...)" between them.
    assert line.startswith("error: No such option: --bogus")
    assert line.endswith("(see helm-redis verify --help)")


def test_a_missing_option_value_is_one_line():
    line = assert_one_line_exit_2(run("prepare-node", "--nodes-conf"))

    assert line.startswith("error: Option '--nodes-conf' requires an argument")


def test_a_value_of_the_wrong_type_is_one_line_naming_the_option():
    line = assert_one_line_exit_2(run("init", "--masters", "three"))

    assert "'--masters'" in line and "see helm-redis init --help" in line


def test_an_unknown_command_is_one_line():
    line = assert_one_line_exit_2(run("verfiy"))

    assert "No such command 'verfiy'" in line


def test_help_still_exits_0_and_lists_every_command():
    done = run("--help")

    assert done.returncode == 0, done.stderr
    for command in ("init", "prepare-node", "verify", "drill"):
        assert command in done.stdout


def test_a_command_s_help_still_exits_0():
    done = run("verify", "-h")

    assert done.returncode == 0, done.stderr
    assert "--nodes" in done.stdout


def test_a_domain_usage_error_keeps_exit_2():
    line = assert_one_line_exit_2(run("verify"))

    assert "RELEASE" in line


# --- prepare-node on a corrupt nodes.conf ------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"a" * 40 + b" 10.0.0.1:6379@16379,redis-0.h myself,master - 0 0 1 conn", id="cut"),
        pytest.param(b"", id="empty"),
        pytest.param(b"\x00" * 128, id="nul-blocks"),
        pytest.param(b"garbage garbage garbage\n", id="garbage"),
    ],
)
def test_prepare_node_on_a_corrupt_nodes_conf_is_one_line_naming_the_file(tmp_path, content):
    path = tmp_path / "nodes.conf"
    path.write_bytes(content)

    line = assert_one_line_exit_2(
        run("prepare-node", "--nodes-conf", str(path), "--timeout", "0", "--takeover-timeout", "0")
    )

    assert line.startswith(f"error: {path}: ")
    assert f"mv {path} {path}.corrupt" in line
    assert path.read_bytes() == content


def test_prepare_node_on_an_unreadable_path_is_one_line(tmp_path):
    line = assert_one_line_exit_2(run("prepare-node", "--nodes-conf", str(tmp_path), "--timeout", "0"))

    assert line == f"error: cannot use {tmp_path} (Is a directory)"


def test_ctrl_c_outside_a_drill_is_one_line_and_exit_130():
    with socket.socket() as probe:  # a port where nothing listens: init waits for the node to answer
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [HELM_REDIS, "init", "--nodes", f"127.0.0.1:{port}", "--masters", "1", "-r", "0", "--timeout", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as under a terminal
    )
    assert process.stderr is not None
    waiting = process.stderr.readline()  # the first progress line: init is waiting
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)

    assert "waiting for 1 node(s)" in waiting
    assert process.returncode == 130
    *progress, last = err.strip().splitlines()
    assert last == "interrupted"
    assert all("waiting for 1 node(s)" in line for line in progress), err
    assert "Traceback" not in out + err


@pytest.mark.parametrize(
    ("helm_bin", "expected"),
    [
        ("no-such-helm-binary", "helm executable 'no-such-helm-binary' was not found"),
        ("false", "as Helm does"),
    ],
)
def test_a_missing_or_wrong_helm_is_one_line(helm_bin, expected):
    """pyhelm3 asserts the executable exists and runs `helm version` first: neither may be a traceback."""
    done = subprocess.run(
        [HELM_REDIS, "verify", "some-release"],
        env={**os.environ, "HELM_BIN": helm_bin},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert expected in assert_one_line_exit_2(done)
