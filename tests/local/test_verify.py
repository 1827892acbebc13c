"""verify against real local clusters: a healthy one passes; each broken state fails the right check."""

from __future__ import annotations

import json
import subprocess

import pytest
from typer.testing import CliRunner

from helm_redis.cli import app
from helm_redis.health import Expectation
from helm_redis.nodes import Connector
from helm_redis.verify import verify
from tests.cli import HELM_REDIS
from tests.engines import engine as find_engine

from .helpers import ADMIN, TEST_USERS, form, master_and_replica, views_of, wait_for

pytestmark = pytest.mark.redis
runner = CliRunner()


def _verdicts(nodes, login=None, **kw) -> dict[str, str]:
    report = verify(Connector(login), nodes.addresses, Expectation(3, 1), **kw)
    return {c.name: c.status for c in report.checks}


def test_a_healthy_cluster_passes_every_check(cluster):
    verdicts = _verdicts(cluster)
    posture = {name: verdicts.pop(name) for name in ("auth-required", "default-user-off", "tls")}
    assert set(verdicts.values()) == {"pass"}, verdicts
    assert set(posture.values()) == {"warn"}, posture  # these nodes are open: warned, not failed
    assert {"nodes-reachable", "cluster-state", "slot-coverage", "replica-links", "write-read"} <= set(
        verdicts
    )


def test_uncovered_slots_fail_slot_coverage(cluster):
    for node in cluster.nodes:
        node.client().execute_command("CLUSTER", "DELSLOTSRANGE", 0, 99)

    verdicts = _verdicts(cluster)

    assert verdicts["slot-coverage"] == "fail"


def test_a_master_without_its_replica_fails_replica_count(cluster):
    _, replica = master_and_replica(cluster)
    replica.stop(kill=True)

    verdicts = _verdicts(cluster)

    assert verdicts["replica-count"] == "fail"
    assert verdicts["nodes-reachable"] == "fail"


def test_a_replica_with_its_link_down_fails_replica_links(make_nodes):
    nodes = make_nodes(6, users=TEST_USERS)
    form(nodes, 3, 1, login=ADMIN, timeout=60)
    master, replica = master_and_replica(nodes, login=ADMIN)
    replica.client().config_set("masterauth", "wrong")
    master.client().execute_command("CLIENT", "KILL", "TYPE", "replica")
    wait_for(
        lambda: replica.client().info("replication")["master_link_status"] == "down",
        timeout=10,
        what="the replica link to go down",
    )

    verdicts = _verdicts(nodes, login=ADMIN)

    assert verdicts["replica-links"] == "fail"


def test_nodes_disagreeing_on_the_slot_map_fail_agreement(cluster):
    views = views_of(cluster)
    owners = sorted((v for v in views if v.myself.slots), key=lambda v: v.myself.config_epoch)
    newest, oldest = owners[-1], owners[0]
    # One node believes the newest master owns a slot of the oldest: gossip never corrects that belief,
    # because the real owner's config epoch is lower.
    onlooker = next(n for n in cluster.nodes if str(n.address) not in (newest.address, oldest.address))
    slot = oldest.myself.slots[0][0]
    onlooker.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE", newest.node_id)

    verdicts = _verdicts(cluster)

    assert verdicts["slot-map-agreement"] == "fail"


def test_an_open_slot_fails_open_slots(cluster):
    views = views_of(cluster)
    owner, other = [v for v in views if v.myself.slots][:2]
    node = next(n for n in cluster.nodes if str(n.address) == owner.address)
    node.client().execute_command("CLUSTER", "SETSLOT", owner.myself.slots[0][0], "MIGRATING", other.node_id)

    verdicts = _verdicts(cluster)

    assert verdicts["open-slots"] == "fail"


def test_replica_placement_is_judged_when_k8s_nodes_are_known(cluster):
    master, replica = master_and_replica(cluster)
    shared = {str(n.address): "node-a" for n in cluster.nodes}  # everything on one k8s node

    assert _verdicts(cluster, k8s_nodes=shared)["replica-placement"] == "warn"  # unavoidable

    spread = {str(n.address): f"node-{i % 3}" for i, n in enumerate(cluster.nodes)}
    spread[str(replica.address)] = spread[str(master.address)]  # avoidable colocation
    assert _verdicts(cluster, k8s_nodes=spread)["replica-placement"] == "fail"


def test_cli_verify_json_and_exit_codes(cluster, engine):
    healthy = runner.invoke(app, ["verify", "--nodes", cluster.nodes_option(), "-r", "1", "-o", "json"])
    assert healthy.exit_code == 0, healthy.output
    document = json.loads(healthy.stdout)
    assert document["ok"] is True
    assert {"checks", "nodes", "seconds", "engines"} <= set(document)
    assert all({"name", "status", "detail"} == set(c) for c in document["checks"])
    assert len(document["nodes"]) == 6
    # the engine each node runs, as detected (Valkey's own version, not its redis_version 7.2.4)
    assert {row["engine"] for row in document["nodes"]} == {f"{engine.family} {engine.version}"}
    assert list(document["engines"].values()) == [{"family": engine.family, "version": engine.version}] * 6
    (check,) = [c for c in document["checks"] if c["name"] == "engine"]
    assert (
        check["status"] == "pass" and f"all 6 nodes run {engine.family} {engine.version}" in check["detail"]
    )

    _, replica = master_and_replica(cluster)
    replica.stop(kill=True)
    sick = runner.invoke(app, ["verify", "--nodes", cluster.nodes_option(), "-r", "1", "-o", "json"])
    assert sick.exit_code == 1
    assert json.loads(sick.stdout)["ok"] is False


def test_cli_verify_read_only_skips_the_round_trip(cluster):
    result = runner.invoke(app, ["verify", "--nodes", cluster.nodes_option(), "--read-only", "-o", "json"])
    assert result.exit_code == 0
    assert "write-read" not in {c["name"] for c in json.loads(result.stdout)["checks"]}


def test_cli_verify_with_a_wrong_password_exits_2_with_one_line(make_nodes, tmp_path):
    nodes = make_nodes(3, users=TEST_USERS)
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")

    # A real process: CliRunner runs the app inside pytest and would never show a traceback.
    done = subprocess.run(
        [
            HELM_REDIS,
            "verify",
            "--nodes",
            nodes.nodes_option(),
            "--user",
            "admin",
            "--password-file",
            str(wrong),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "password" in done.stderr
    assert "not-the-password" not in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_a_whole_shard_down_is_reported_as_its_two_silent_members_first(cluster):
    master, replica = master_and_replica(cluster)
    master.stop(kill=True)
    replica.stop(kill=True)

    report = verify(Connector(), cluster.addresses, Expectation(3, 1))

    first = next(c for c in report.checks if not c.ok)
    assert first.name == "nodes-reachable"
    assert str(master.address) in first.detail and str(replica.address) in first.detail
    assert f"{master.address} (master of slots" in first.detail
    assert f"{replica.address} (replica of {master.address})" in first.detail
    assert not [c for c in report.checks if "outside" in c.detail], report.checks
    verdicts = {c.name: c for c in report.checks}
    # Consistent with each other: the dead master still owns its slots (no replica could take them).
    assert verdicts["membership"].ok, verdicts["membership"]
    assert verdicts["replica-count"].ok, verdicts["replica-count"]  # 3 masters own slots, as expected
    assert verdicts["slot-coverage"].status == "fail"
    assert f"belong to {master.address}, which does not answer" in verdicts["slot-coverage"].detail
    silent = {row["node"]: row for row in report.nodes if row["role"] == "does not answer"}
    assert set(silent) == {str(master.address), str(replica.address)}


def test_cli_verify_without_release_or_nodes_is_a_usage_error():
    result = runner.invoke(app, ["verify"])
    assert result.exit_code == 2
    assert "RELEASE" in result.stderr


def test_nodes_on_different_engines_warn_and_still_pass(make_nodes):
    """A migration between engines under way (Redis 7.0 masters, a Valkey 9.1 one joining): verify names
    every node's engine and warns; the cluster itself is healthy, so the verdict stays a pass."""
    valkey = find_engine("valkey-9.1")
    nodes = make_nodes(2)
    joining = make_nodes(1, server=valkey.server)
    nodes.nodes.append(joining.nodes[0])
    form(nodes, 3, 0, timeout=60)

    report = verify(Connector(), nodes.addresses, Expectation(3, 0))

    verdicts = {c.name: c for c in report.checks}
    assert verdicts["engine"].status == "warn", verdicts["engine"]
    assert "redis 7.0.15" in verdicts["engine"].detail and "valkey 9.1.2" in verdicts["engine"].detail
    assert report.ok, [c for c in report.checks if not c.ok]
    assert sorted(row["engine"] for row in report.nodes) == ["redis 7.0.15", "redis 7.0.15", "valkey 9.1.2"]
