"""A fresh formation's short cluster-node-timeout (helm_redis.node_timeout), on real local nodes: it is
used while forming and the configured value is back afterwards; a run killed half-way leaves it short,
verify says so and the next run puts it back; scale-out and repair never shorten it."""

from __future__ import annotations

import subprocess
import threading
import time

from helm_redis.node_timeout import FORMATION_NODE_TIMEOUT_MS, read_node_timeouts
from helm_redis.nodes import Connector
from helm_redis.verify import verify
from tests.cli import HELM_REDIS, run_cli

from .helpers import assert_complete, form, read_back, write_keys

CONFIGURED = 5000  # the nodes' redis.conf (LocalNodes' default, the chart's cluster.nodeTimeout)


def _timeouts(nodes) -> set[int]:
    return set(read_node_timeouts(Connector(), nodes.addresses).values())


class _LowestTimeout(threading.Thread):
    """The lowest cluster-node-timeout any node reports while a run goes on (polled every 20 ms)."""

    def __init__(self, nodes) -> None:
        super().__init__(daemon=True)
        self.nodes, self.lowest, self.done = nodes, CONFIGURED, threading.Event()

    def run(self) -> None:
        connector = Connector(timeout=2)
        for _ in range(15_000):  # 5 minutes at most
            if self.done.wait(0.02):
                return
            try:
                self.lowest = min(self.lowest, *read_node_timeouts(connector, self.nodes.addresses).values())
            except Exception:  # a node busy restarting: the next poll reads it
                continue

    def stop(self) -> int:
        self.done.set()
        self.join(timeout=10)
        return self.lowest


def test_a_fresh_formation_forms_with_a_short_node_timeout_and_puts_the_configured_one_back(make_nodes):
    nodes = make_nodes(6)
    said: list[str] = []
    watch = _LowestTimeout(nodes)
    watch.start()

    form(nodes, 3, 1, timeout=60, progress=said.append, node_timeout=CONFIGURED)

    assert watch.stop() == FORMATION_NODE_TIMEOUT_MS, "the formation did not shorten the node timeout"
    assert any(f"{FORMATION_NODE_TIMEOUT_MS} ms while forming" in line for line in said), said
    assert _timeouts(nodes) == {CONFIGURED}
    assert_complete(nodes, 3, 1)


def test_a_formation_killed_half_way_is_flagged_by_verify_and_restored_by_the_next_run(make_nodes):
    nodes = make_nodes(6)
    run = subprocess.Popen(
        [HELM_REDIS, "init", "--nodes", nodes.nodes_option(), "--node-timeout", str(CONFIGURED)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert run.stderr is not None
        for _ in range(200):  # progress lines; the one we wait for comes within the first few
            line = run.stderr.readline()
            if not line or "while forming" in line:
                break
        assert "while forming" in line, "init never said it shortened the node timeout"
        run.kill()  # before it could put the configured value back
    finally:
        run.kill()
        run.wait(timeout=30)
    assert _timeouts(nodes) == {FORMATION_NODE_TIMEOUT_MS}

    report = verify(Connector(), nodes.addresses, read_only=True)
    (check,) = [c for c in report.checks if c.name == "node-timeout"]
    # without the configured value verify can only compare the nodes with each other: all alike here
    assert check.status == "pass", check
    done = run_cli(
        "verify", "--nodes", nodes.nodes_option(), "--node-timeout", str(CONFIGURED), "--read-only"
    )
    assert done.returncode == 1 and f"cluster-node-timeout should be {CONFIGURED} ms" in done.stdout, done

    again = run_cli("init", "--nodes", nodes.nodes_option(), "--node-timeout", str(CONFIGURED))

    assert again.returncode == 0, again.stderr
    assert f"cluster-node-timeout {CONFIGURED} ms put back on" in again.stderr, again.stderr
    assert _timeouts(nodes) == {CONFIGURED}
    assert_complete(nodes, 3, 1)


def test_scale_out_never_shortens_the_node_timeout(make_nodes):
    nodes = make_nodes(6)
    form(nodes, 3, 1, timeout=60, node_timeout=CONFIGURED)
    data = write_keys(nodes, 500)
    nodes.nodes += make_nodes(2).nodes  # two fresh, empty nodes join a cluster that holds slots and keys
    said: list[str] = []
    watch = _LowestTimeout(nodes)
    watch.start()
    time.sleep(0.1)

    form(nodes, 4, 1, timeout=120, progress=said.append, node_timeout=CONFIGURED)

    assert watch.stop() == CONFIGURED
    assert not any("while forming" in line for line in said), said
    assert read_back(nodes, data) == {}
