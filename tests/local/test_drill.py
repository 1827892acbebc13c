"""The failover drill against real local clusters; a killed (or stopped) and restarted process plays the
deleted pod. Numbers are printed, never asserted."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helm_redis.cli import app
from helm_redis.drill import EVENTS, Drill
from helm_redis.formation import members_from_addresses
from helm_redis.nodes import Connector

from .helpers import views_of
from .supervision import ProcessFaults, Supervisor

pytestmark = pytest.mark.redis
runner = CliRunner()
HELM_REDIS = str(Path(sys.executable).with_name("helm-redis"))


def _ids(nodes) -> dict[str, str]:
    return {v.address: v.node_id for v in views_of(nodes)}


def _print(report) -> None:
    gaps = {name: f"{s.longest_gap * 1000:.0f} ms" for name, s in report.shards.items()}
    print(
        f"\n{report.mode} drill: promotion {report.promotion_seconds:.2f} s, write gap per shard {gaps}, "
        f"acknowledged {report.acknowledged} (lost {report.lost_acknowledged}), "
        f"unreplicated {report.unreplicated}, failed {report.failed}, timeline "
        + ", ".join(f"{e} {report.timeline[e]:.2f}" for e in EVENTS if e in report.timeline)
    )


@pytest.mark.parametrize("mode", ["crash", "graceful"])
def test_drill_promotes_the_replica_and_the_old_master_rejoins_with_its_id(cluster, mode):
    ids_before = _ids(cluster)
    faults = ProcessFaults(cluster)

    with Supervisor(cluster):
        report = Drill(
            Connector(), members_from_addresses(cluster.addresses), faults, 1, mode=mode, timeout=90
        ).run()

    _print(report)
    assert report.ok, report.problems
    expected_events = set(EVENTS) - ({"failure seen"} if mode == "graceful" else set())
    assert expected_events <= set(report.timeline)
    assert report.new_master
    assert report.lost_acknowledged == 0
    assert report.acknowledged > 0
    assert _ids(cluster) == ids_before  # every node, the old master included, kept its node ID
    target_view = next(v for v in views_of(cluster) if v.address == report.target)
    assert target_view.myself.is_replica
    if mode == "graceful":
        assert "handed over" in faults.prestop_output


def test_failback_gives_the_slots_back_to_the_original_master(cluster):
    with Supervisor(cluster):
        report = Drill(
            Connector(),
            members_from_addresses(cluster.addresses),
            ProcessFaults(cluster),
            1,
            mode="graceful",
            timeout=90,
            failback=True,
        ).run()

    assert report.ok, report.problems
    target_view = next(v for v in views_of(cluster) if v.address == report.target)
    assert target_view.myself.is_master and target_view.myself.slots


def test_a_slow_failover_beyond_the_limit_fails_the_drill(cluster):
    with Supervisor(cluster):
        report = Drill(
            Connector(),
            members_from_addresses(cluster.addresses),
            ProcessFaults(cluster),
            1,
            mode="crash",
            timeout=90,
            max_failover_seconds=0.001,
        ).run()

    assert not report.ok
    assert any("--max-failover-seconds" in p for p in report.problems)
    assert report.lost_acknowledged == 0


def test_cli_drill_on_nodes_reports_json_and_exits_0(cluster):
    with Supervisor(cluster):
        result = runner.invoke(
            app, ["drill", "--nodes", cluster.nodes_option(), "-r", "1", "--mode", "crash", "-o", "json"]
        )

    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["ok"] is True
    assert document["writes"]["lost_acknowledged"] == 0
    assert set(document["writes"]) == {
        "acknowledged",
        "unreplicated",
        "failed",
        "lost_acknowledged",
        "lost_unreplicated",
        "unverified",
    }
    assert [e["event"] for e in document["timeline"]][:1] == ["fault injected"]
    assert document["promotion_seconds"] > 0
    # One write gap per shard, named by its master at the start: the masters now, with the new master
    # taking back the name of the master it replaced.
    masters_now = {v.address for v in views_of(cluster) if v.myself.slots}
    assert document["new_master"] in masters_now and document["target"] not in masters_now
    masters_at_start = (masters_now - {document["new_master"]}) | {document["target"]}
    assert set(document["write_gap_seconds"]) == masters_at_start


def test_cli_drill_refuses_a_sick_cluster_without_force(cluster):
    views = views_of(cluster)
    master_id = next(v.node_id for v in views if v.myself.slots)
    replica = next(n for n, v in zip(cluster.nodes, views, strict=True) if v.myself.master_id == master_id)
    replica.stop(kill=True)

    result = runner.invoke(app, ["drill", "--nodes", cluster.nodes_option(), "-r", "1"])

    assert result.exit_code == 2
    assert "refusing to drill" in result.stderr and "--force" in result.stderr


def test_cli_drill_of_an_unknown_pod_is_a_usage_error(cluster):
    result = runner.invoke(app, ["drill", "--nodes", cluster.nodes_option(), "--pod", "nope"])
    assert result.exit_code == 2
    assert "nope" in result.stderr


def test_ctrl_c_stops_the_load_and_still_reports_what_was_measured(cluster):
    with Supervisor(cluster):
        drill = subprocess.Popen(
            [HELM_REDIS, "drill", "--nodes", cluster.nodes_option(), "-r", "1", "-o", "json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # A background job inherits SIGINT ignored (and Python then keeps ignoring it): start as a
            # terminal would, where Ctrl-C interrupts.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        progress = []
        assert drill.stderr is not None
        for line in drill.stderr:  # bounded by the drill's own timeouts
            progress.append(line)
            if "injected" in line:
                break
        time.sleep(1)  # the fault is in, the failover is not over yet (node timeout 5 s)
        drill.send_signal(signal.SIGINT)
        out, err = drill.communicate(timeout=60)

    assert drill.returncode == 1, "".join(progress) + err
    document = json.loads(out)
    assert document["interrupted"] is True
    assert document["writes"]["acknowledged"] > 0
    assert document["writes"]["lost_acknowledged"] == 0
    assert "Traceback" not in err
