"""The failover drill against real local clusters; a killed (or stopped) and restarted process plays the
deleted pod. Numbers are printed, never asserted."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import threading
import time

import pytest
from typer.testing import CliRunner

from helm_redis.cli import app
from helm_redis.drill import EVENTS, Drill, DrillReport, LoadRun, RolloutDrill, RolloutStatus
from helm_redis.errors import NodeUnreachable
from helm_redis.faults import CommandFaults, FaultNotInjected, freeze, hand_over
from helm_redis.formation import members_from_addresses
from helm_redis.health import DONE_CHECKS, Expectation, assess, failed
from helm_redis.nodes import Connector
from helm_redis.slots import SlotMove, move_slots
from tests.cli import HELM_REDIS

from .helpers import master_and_replica, views_of, wait_for
from .supervision import ProcessFaults, Supervisor

pytestmark = pytest.mark.redis
runner = CliRunner()


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


# --- Fault modes that mean what they say (issue 9, item 7) and the proof of each fault ---------------


class RestartInPlace(Supervisor):
    """A kubelet restarting a container that exited: same volume, back within a second, and no start step
    (init containers do not run again for a container restart)."""

    def __init__(self, nodes, delay: float = 0.3) -> None:
        super().__init__(nodes, delay)

    def start_step(self, node) -> None:
        pass


class HandoverInDisguise:
    """A dishonest fault: hands the slots over first (CLUSTER FAILOVER on the replica, what the preStop
    does), then takes the node down the way the claimed mode says. The drill must see through it."""

    def __init__(self, connector: Connector) -> None:
        self.connector = connector

    def inject(self, target, mode) -> None:
        hand_over(self.connector, target.address, 25)
        CommandFaults(self.connector).inject(target, mode)


def _drill(cluster, mode: str, faults=None, **options) -> DrillReport:
    connector = Connector()
    try:
        return Drill(
            connector,
            members_from_addresses(cluster.addresses),
            faults or CommandFaults(connector),
            1,
            mode=mode,
            timeout=90,
            **options,
        ).run()
    finally:
        connector.close()


def _summary(report: DrillReport) -> str:
    promotion = "none" if report.promotion_seconds is None else f"{report.promotion_seconds:.2f} s"
    gaps = {name: f"{s.longest_gap * 1000:.0f} ms" for name, s in report.shards.items()}
    return (
        f"\n{report.mode} drill: outcome {report.outcome!r}, promotion {promotion}, manual failovers "
        f"{report.manual_failovers}, gaps {gaps}, acknowledged {report.acknowledged} "
        f"(lost {report.lost_acknowledged}), timeline "
        + ", ".join(f"{e} {t:.2f}" for e, t in report.ordered_timeline())
    )


def _role_of(cluster, address: str):
    return next(v for v in views_of(cluster) if v.address == address).myself


def test_graceful_drill_proves_its_handover_by_the_replicas_manual_failover(cluster):
    with Supervisor(cluster):
        report = _drill(cluster, "graceful")

    print(_summary(report))
    assert report.ok, report.problems
    assert report.manual_failovers == 1
    assert report.outcome.startswith("handed over to ")
    assert report.promotion_seconds is not None and report.promotion_seconds < 1
    assert report.lost_acknowledged == 0


def test_restart_drill_back_within_the_node_timeout_keeps_the_master_without_failover(cluster):
    ids_before = _ids(cluster)

    with RestartInPlace(cluster):
        report = _drill(cluster, "restart")

    print(_summary(report))
    assert report.ok, report.problems
    assert report.outcome == "returned as master within the node timeout: no failover"
    assert report.promotion_seconds is None and not report.new_master
    assert report.manual_failovers == 0
    assert {"node down", "node back", "returned as master", "replication link up"} <= set(report.timeline)
    assert report.timeline["node back"] < 5  # the node timeout
    assert report.lost_acknowledged == 0 and report.acknowledged > 0
    assert _role_of(cluster, report.target).slots  # still the master of its slots
    assert _ids(cluster) == ids_before


def test_restart_drill_whose_node_waits_for_a_takeover_reports_the_promotion(cluster):
    # The supervisor runs the pod's start step, in which a restarting master waits for its replica.
    with Supervisor(cluster):
        report = _drill(cluster, "restart")

    print(_summary(report))
    assert report.ok, report.problems
    assert report.outcome.startswith("replica promoted: ")
    assert report.manual_failovers == 0
    assert report.lost_acknowledged == 0
    assert _role_of(cluster, report.target).is_replica


def test_hang_drill_is_an_election_after_the_node_timeout_and_the_old_master_wakes_as_replica(cluster):
    ids_before = _ids(cluster)

    # No supervisor: the frozen process wakes by itself.
    result = runner.invoke(
        app, ["drill", "--nodes", cluster.nodes_option(), "-r", "1", "--mode", "hang", "-o", "json"]
    )

    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    print(
        f"\nhang drill: {document['outcome']}, promotion {document['promotion_seconds']} s, "
        f"gaps {document['write_gap_seconds']}, timeline {document['timeline']}"
    )
    assert document["manual_failovers"] == 0
    assert document["node_timeout_seconds"] == 5
    assert document["outcome"].startswith("unplanned failover: ")
    assert 5 < document["promotion_seconds"] < 5 + 5  # node timeout + detection and election
    events = {e["event"] for e in document["timeline"]}
    assert {"node down", "failure seen", "replica promoted", "node back", "rejoined as replica"} <= events
    assert document["writes"]["lost_acknowledged"] == 0
    assert _role_of(cluster, document["target"]).is_replica
    assert _ids(cluster) == ids_before


def test_crash_drill_on_nodes_is_an_unplanned_failover_without_any_manual_one(cluster):
    ids_before = _ids(cluster)

    with Supervisor(cluster):
        report = _drill(cluster, "crash")

    print(_summary(report))
    assert report.ok, report.problems
    assert report.manual_failovers == 0
    assert report.outcome.startswith("unplanned failover: ")
    assert report.promotion_seconds is not None and report.promotion_seconds > 5
    assert "failure seen" in report.timeline
    assert report.lost_acknowledged == 0
    assert _role_of(cluster, report.target).is_replica
    assert _ids(cluster) == ids_before


@pytest.mark.parametrize("claimed", ["hang", "crash"])
def test_a_handover_passed_off_as_an_unplanned_fault_makes_the_drill_invalid(cluster, claimed):
    with Supervisor(cluster):
        report = _drill(cluster, claimed, faults=HandoverInDisguise(Connector()))

    print(_summary(report))
    assert not report.ok
    assert report.manual_failovers == 1
    assert any(p.startswith("invalid drill: 1 manual failover") for p in report.problems), report.problems
    assert report.lost_acknowledged == 0


def test_graceful_drill_without_a_handover_fails_for_want_of_proof(cluster):
    class StopWithoutHandover:
        def inject(self, target, mode) -> None:
            cluster.by_address(target.address).process.terminate()  # no preStop

    with Supervisor(cluster):
        report = _drill(cluster, "graceful", faults=StopWithoutHandover())

    print(_summary(report))
    assert not report.ok
    assert report.manual_failovers == 0
    assert any(p.startswith("no handover: the preStop did not hand over") for p in report.problems)


def test_a_shard_unwritable_beyond_the_bound_fails_the_drill(cluster):
    with Supervisor(cluster):
        report = _drill(cluster, "crash", max_unwritable_seconds=1)

    assert not report.ok
    assert any("--max-unwritable-seconds 1" in p and report.target in p for p in report.problems)


def test_freezing_a_node_whose_config_refuses_debug_is_a_clear_error(make_nodes):
    nodes = make_nodes(1)
    node = nodes.nodes[0]
    node.stop()
    node.directory.joinpath("redis.conf").write_text(node.config().replace("enable-debug-command local", ""))
    node.process = subprocess.Popen(
        [str(node.server), str(node.directory / "redis.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    node.wait_ready()
    connector = Connector()

    with pytest.raises(FaultNotInjected, match="enable-debug-command local"):
        freeze(connector, node.address, 5)
    assert node.client().ping()


def test_cli_drill_modes_are_checked_and_rollout_needs_a_release(cluster):
    unknown = runner.invoke(app, ["drill", "--nodes", cluster.nodes_option(), "--mode", "kill"])
    rollout = runner.invoke(app, ["drill", "--nodes", cluster.nodes_option(), "--mode", "rollout"])
    helped = runner.invoke(app, ["drill", "--help"], env={"COLUMNS": "200"})

    assert unknown.exit_code == 2 and "graceful, restart, hang, crash, rollout" in unknown.stderr
    assert rollout.exit_code == 2
    assert "--mode rollout restarts a release's StatefulSet" in rollout.stderr and "--nodes" in rollout.stderr
    for mode in ("graceful:", "restart:", "hang:", "crash:", "rollout:"):
        assert mode in " ".join(helped.stdout.split())


# --- The write load on its own, and a rollout on local processes (issue 9, item 6) --------------------


def test_load_run_reports_per_shard_gaps_and_loses_nothing_across_a_handover(cluster):
    connector = Connector()
    master, _replica = master_and_replica(cluster)
    masters_at_start = {v.address for v in views_of(cluster) if v.myself.slots}

    with LoadRun(connector, members_from_addresses(cluster.addresses), replicas_per_master=1) as load:
        time.sleep(0.5)
        assert hand_over(connector, master.address, 25)
        time.sleep(0.5)

    result = load.result
    connector.close()
    assert result is not None
    print(f"\nload across a handover: gaps {result.longest_gaps}, acknowledged {result.acknowledged}")
    assert set(result.shards) == masters_at_start  # each shard named by its master at the start
    assert all(s.acknowledged > 0 for s in result.shards.values())
    assert result.lost_acknowledged == 0 and result.unverified == 0
    assert result.longest_gaps[str(master.address)] < 2


class LocalRollingRestart:
    """A StatefulSet's rolling update played on local processes: highest ordinal first, each node gets the
    preStop (a master hands over) and stops; the supervisor restarts it; the next one waits until the
    cluster passes every done-check again."""

    name = "local-nodes"

    def __init__(self, nodes, supervisor: Supervisor) -> None:
        self.nodes = nodes
        self.supervisor = supervisor
        self.restarted = 0
        self.thread = threading.Thread(target=self._roll, daemon=True, name="rollout")

    def start(self) -> None:
        self.thread.start()

    def status(self) -> RolloutStatus:
        total = len(self.nodes.nodes)
        return RolloutStatus(self.restarted == total, f"{self.restarted}/{total} restarted")

    def _roll(self) -> None:
        faults = ProcessFaults(self.nodes)
        for node in reversed(self.nodes.nodes):
            restarts = self.supervisor.restarts
            faults.inject(members_from_addresses([node.address])[0], "graceful")
            wait_for(lambda r=restarts: self.supervisor.restarts > r, 60, what="the restart")
            wait_for(lambda: not _failing_done_checks(self.nodes), 90, what="a complete cluster")
            self.restarted += 1


def _failing_done_checks(nodes) -> list:
    try:
        return failed(assess(views_of(nodes), Expectation(3, 1)), DONE_CHECKS)
    except NodeUnreachable as error:
        return [error]


def test_rollout_drill_records_every_handover_and_loses_no_acknowledged_write(cluster):
    connector = Connector()
    with Supervisor(cluster) as supervisor:
        report = RolloutDrill(
            connector,
            members_from_addresses(cluster.addresses),
            Expectation(3, 1),
            LocalRollingRestart(cluster, supervisor),
            timeout=300,
        ).run()
    connector.close()

    print(
        f"\nrollout drill: {report.outcome}, gaps "
        + ", ".join(f"{s.name} {s.longest_gap * 1000:.0f} ms" for s in report.shards.values())
        + "; handovers "
        + ", ".join(f"{h.seconds:.1f} s {h.shard}: {h.old} -> {h.new}" for h in report.handovers)
    )
    assert report.ok, report.problems
    assert {"rollout started", "rollout complete", "cluster healthy"} <= set(report.timeline)
    assert report.lost_acknowledged == 0 and report.acknowledged > 0
    assert all(s.lost == 0 and s.acknowledged > 0 for s in report.shards.values())
    # Every master was restarted once: each shard changed hands at least once.
    assert {h.shard for h in report.handovers} == set(report.shards)
    assert all(h.old != h.new for h in report.handovers)
    document = report.as_dict()
    assert document["handovers"] and document["shards"][0]["slots"]


def test_load_run_follows_ask_and_moved_while_slots_move_and_loses_nothing(cluster):
    connector = Connector()
    members = members_from_addresses(cluster.addresses)
    views = {m: v for m, v in zip(members, views_of(cluster), strict=True)}
    source, target = [m for m, v in views.items() if v.myself.slots][:2]
    first, _last = views[source].myself.slots[0]
    moves = [SlotMove(slot, source, target) for slot in range(first, first + 2000)]

    with LoadRun(connector, members, replicas_per_master=1) as load:
        time.sleep(0.5)
        moved_keys = move_slots(connector, views, moves)
        time.sleep(0.5)

    result = load.result
    connector.close()
    assert result is not None
    print(f"\nload across 2000 slot moves ({moved_keys} keys moved): gaps {result.longest_gaps}")
    assert moved_keys > 0
    assert result.lost_acknowledged == 0 and result.unverified == 0
    assert result.shards[source.name].acknowledged > 0
    assert result.longest_gaps[source.name] < 1


def test_a_frozen_node_stays_frozen_through_sigterm_so_a_prestop_could_not_hand_over(make_nodes):
    # What the kubelet does to a force-deleted pod: preStop, then SIGTERM. SIGTERM ends a DEBUG SLEEP
    # early; the freeze's next pipelined slice must take over at once, so nobody gets an answer.
    node = make_nodes(1).nodes[0]
    freeze(Connector(), node.address, 8)  # 2 slices of 4 s
    assert node.process is not None
    answer = b""

    node.process.terminate()
    started = time.monotonic()
    with contextlib.suppress(OSError), socket.create_connection((node.ip, node.port), timeout=2) as probe:
        probe.sendall(b"PING\r\n")
        probe.settimeout(15)
        answer = probe.recv(64)  # nothing until the process exits (then b"" or a reset)
    node.process.wait(timeout=20)

    assert b"PONG" not in answer
    assert time.monotonic() - started > 2  # it exited only after the next slice
