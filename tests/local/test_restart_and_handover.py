"""Surviving restarts without the hook: the start step (nodes.conf rewrite), preStop handover, readiness."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import redis

from helm_redis.faults import hand_over
from helm_redis.health import DONE_CHECKS, Expectation, assess, failed
from helm_redis.nodes import Connector, read_view
from helm_redis.nodesconf import prepare_nodes_conf
from tests.engines import engine as find_engine

from .helpers import (
    ADMIN,
    TEST_USERS,
    assert_complete,
    cluster_client,
    form,
    master_and_replica,
    read_back,
    views_of,
    wait_for,
    write_keys,
)

pytestmark = pytest.mark.redis

FILES = Path(__file__).resolve().parents[2] / "charts" / "redis-cluster" / "files"


def _complete(nodes, masters=3, replicas=1) -> bool:
    return not failed(assess(views_of(nodes), Expectation(masters, replicas)), DONE_CHECKS)


def _ids_by_hostname(nodes) -> dict[str, str]:
    return {n.hostname: v.node_id for n, v in zip(nodes.nodes, views_of(nodes), strict=True)}


def test_all_nodes_restarted_on_new_addresses_reform_with_the_same_ids_and_keys(make_nodes):
    nodes = make_nodes(6)
    form(nodes, 3, 1, timeout=60)
    data = write_keys(nodes, 500)
    ids_before = _ids_by_hostname(nodes)

    nodes.stop()  # every pod at once
    new_addresses = nodes.move_to_new_block()
    for node in nodes.nodes:  # what each pod's start step does before redis-server starts
        prepare_nodes_conf(node.nodes_conf, timeout=5, resolve=new_addresses.get, progress=lambda _m: None)
    started = time.monotonic()
    nodes.start()
    wait_for(lambda: _complete(nodes), timeout=60, what="the cluster to re-form")
    print(f"\nfull restart on new addresses: complete again {time.monotonic() - started:.2f} s after start")

    assert _ids_by_hostname(nodes) == ids_before
    assert_complete(nodes, 3, 1)
    assert read_back(nodes, data) == {}


def _restart_on_new_addresses_without_the_start_step(nodes) -> None:
    """Nodes restart believing their stale peers are up; after the node timeout they see the truth."""
    nodes.stop()
    nodes.move_to_new_block()
    nodes.start()
    wait_for(
        lambda: all(v.cluster_info["cluster_state"] == "fail" for v in views_of(nodes)),
        timeout=30,
        what="every node to notice its peers are gone",
    )


def test_without_the_start_step_a_full_restart_on_new_addresses_stays_down(make_nodes):
    nodes = make_nodes(6)
    form(nodes, 3, 1, timeout=60)

    _restart_on_new_addresses_without_the_start_step(nodes)
    time.sleep(3)

    assert all(v.cluster_info["cluster_state"] == "fail" for v in views_of(nodes))


# --- the container's scripts, run as the kubelet runs them ------------------------------------------


def _run_script(name: str, node, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(FILES / name)],
        env={
            **os.environ,
            "PATH": _cli_path(node),
            "REDIS_CLI": _cli(node),
            "REDIS_HOST": node.ip,
            "REDIS_PORT": str(node.port),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _cli(node) -> str:
    """The engine's own CLI, as the chart gives it to the scripts (REDIS_CLI: redis-cli, valkey-cli)."""
    server = Path(node.server)
    return str(server.with_name(server.name.replace("-server", "-cli")))


def _cli_path(node) -> str:
    """PATH with the node's engine first: the scripts call its CLI (each engine's bin/ has `redis-cli`)."""
    return os.pathsep.join([str(Path(node.server).parent), os.environ.get("PATH", "")])


def _timed_prestop(node, budget: int, timeout: float = 60) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = _run_script("prestop.sh", node, timeout=timeout, PRESTOP_TIMEOUT_SECONDS=str(budget))
    return done, time.monotonic() - started


def _not_ready(node) -> str:
    """The readiness probe's one line about why the node is not ready (fails if it is ready)."""
    probe = _run_script("readiness.sh", node)
    assert probe.returncode == 1, f"{node.address} is ready: {probe.stdout!r}"
    assert len(probe.stdout.splitlines()) == 1, probe.stdout
    return probe.stdout.strip()


def _ready(node) -> bool:
    probe = _run_script("readiness.sh", node)
    assert probe.returncode in (0, 1), probe
    return probe.returncode == 0


def _role(node) -> str:
    return node.client().execute_command("ROLE")[0]


def _replicas_seen_by(master) -> list[dict]:
    """The master's INFO replication entries (redis-py parses `slaveN:ip=..,port=..` into dicts)."""
    replication = master.client().info("replication")
    return [v for k, v in replication.items() if k.startswith("slave") and isinstance(v, dict)]


def _resync_slowly(master, replica, delay: int) -> float:
    """Restart the replica so that it needs a full sync, which the master holds back for `delay` seconds
    (diskless sync waiting for more replicas). Returns when the sync is pending (monotonic restart time)."""
    client = master.client()
    client.config_set("repl-diskless-sync-max-replicas", 0)
    client.config_set("repl-diskless-sync-delay", delay)
    replica.stop()  # SIGTERM; with AOF only and no save points the replica forgets its replication id
    restarted = time.monotonic()
    replica.start()
    replica.wait_ready()
    wait_for(
        lambda: [r["state"] for r in _replicas_seen_by(master)] == ["wait_bgsave"],
        timeout=15,
        what="the restarted replica to wait for its full sync",
    )
    return restarted


def _replica_online_after(master, since: float, timeout: float = 30) -> float:
    wait_for(
        lambda: [r["state"] for r in _replicas_seen_by(master)] == ["online"],
        timeout=timeout,
        interval=0.02,
        what="the replica to come online",
    )
    return time.monotonic() - since


def _other_shard(nodes, master):
    """Another slot-owning master of the cluster and its replica."""
    views = {str(n.address): v for n, v in zip(nodes.nodes, views_of(nodes), strict=True)}
    other = next(n for n in nodes.nodes if n is not master and views[str(n.address)].myself.slots)
    other_id = views[str(other.address)].node_id
    return other, next(n for n in nodes.nodes if views[str(n.address)].myself.master_id == other_id)


def _bracketed(node) -> str:
    return f"[{node.ip}]:{node.port}" if ":" in node.ip else f"{node.ip}:{node.port}"


# --- preStop -----------------------------------------------------------------------------------------


class Writer(threading.Thread):
    """Writes sequenced keys through a cluster client until stopped; records errors and the longest gap."""

    def __init__(self, nodes) -> None:
        super().__init__(daemon=True)
        self.client = cluster_client(nodes)
        self.stop_event = threading.Event()
        self.written = 0
        self.errors = 0
        self.longest_gap = 0.0

    def run(self) -> None:
        last_ok = time.monotonic()
        for seq in range(200_000):  # bounded
            if self.stop_event.is_set():
                break
            try:
                self.client.set(f"w:{seq}", seq)
                self.written += 1
                now = time.monotonic()
                self.longest_gap = max(self.longest_gap, now - last_ok)
                last_ok = now
            except redis.RedisError:
                self.errors += 1
            time.sleep(0.001)

    def finish(self) -> None:
        self.stop_event.set()
        self.join(timeout=30)


def test_prestop_hands_a_masters_slots_to_its_replica_while_writes_continue(make_nodes):
    nodes = make_nodes(6)
    form(nodes, 3, 1, timeout=60)
    master, replica = master_and_replica(nodes)
    writer = Writer(nodes)
    writer.start()
    time.sleep(0.3)

    done = _run_script("prestop.sh", master, PRESTOP_TIMEOUT_SECONDS="20")
    written_at_handover = writer.written
    time.sleep(0.3)
    writer.finish()

    assert done.returncode == 0, done.stderr
    assert f"handed over to {replica.ip}:{replica.port}" in done.stdout
    assert master.client().execute_command("ROLE")[0] == "slave"
    assert replica.client().execute_command("ROLE")[0] == "master"
    assert writer.errors == 0
    assert writer.written > written_at_handover  # writes went on against the new master
    print(f"\nplanned handover: longest client-seen write gap {writer.longest_gap * 1000:.0f} ms")


def test_prestop_in_a_move_between_engines_hands_over_to_a_replica_on_the_masters_engine(make_nodes):
    """Mid-way through a rolling move from Redis 7.0 to Valkey 9.1, a Redis 7.0 master with a Redis 7.0
    and a Valkey 9.1 replica hands over to the Redis 7.0 one: a Valkey master could not feed it (Redis 7.0
    cannot load Valkey's RDB). The Valkey replica is the one a tie on offsets would put first."""
    nodes = make_nodes(9)  # redis-7.0, the chart's default engine
    form(nodes, 3, 2, timeout=60)
    data = write_keys(nodes, 300)
    views = {str(v.address): v for v in views_of(nodes)}
    master = next(n for n in nodes.nodes if views[str(n.address)].myself.slots)
    replicas = sorted(
        (
            n
            for n in nodes.nodes
            if views[str(n.address)].myself.master_id == views[str(master.address)].node_id
        ),
        key=lambda n: n.ip,  # equal offsets: `sort` then orders the "offset state ip port" lines by ip
    )
    moved, stayed = replicas
    moved.stop()
    moved.server = find_engine("valkey-9.1").server  # the same data directory, nodes.conf and node ID
    moved.start()
    moved.wait_ready()
    wait_for(
        lambda: (
            sorted(r["state"] for r in _replicas_seen_by(master)) == ["online", "online"]
            and len({r["offset"] for r in _replicas_seen_by(master)}) == 1
        ),
        timeout=30,
        what="both replicas online at the master's offset",
    )
    assert moved.client().info("server")["valkey_version"] == "9.1.2"

    done, took = _timed_prestop(master, budget=20)

    assert done.returncode == 0, done.stderr
    assert f"handed over to {stayed.ip}:{stayed.port}" in done.stdout, done.stdout
    assert _role(stayed) == "master" and _role(moved) == "slave"
    wait_for(lambda: read_back(nodes, data) == {}, timeout=20, what="every key to be readable")
    print(
        f"\npreStop in a Redis 7.0 -> Valkey 9.1 move: handed over to the Redis 7.0 replica in {took:.2f} s"
    )


def test_prestop_on_a_replica_changes_nothing(make_nodes):
    nodes = make_nodes(6)
    form(nodes, 3, 1, timeout=60)
    master, replica = master_and_replica(nodes)

    done = _run_script("prestop.sh", replica)

    assert done.returncode == 0
    assert "nothing to hand over" in done.stdout
    assert master.client().execute_command("ROLE")[0] == "master"


def test_prestop_on_a_master_whose_replica_is_gone_stops_within_its_budget(make_nodes):
    nodes = make_nodes(6)
    form(nodes, 3, 1, timeout=60)
    master, replica = master_and_replica(nodes)
    replica.stop(kill=True)
    wait_for(lambda: not _replicas_seen_by(master), timeout=20, what="the replica link to drop")

    done, took = _timed_prestop(master, budget=5)

    assert done.returncode == 0
    assert "no replica to hand over to" in done.stdout, done.stdout
    assert took < 5 + 2
    assert _role(master) == "master"
    print(f"\npreStop without a replica: {took:.2f} s")


def test_prestop_waits_for_a_replica_in_full_sync_then_hands_over_every_key(make_nodes):
    nodes = make_nodes(6)
    form(nodes, 3, 1, timeout=60)
    data = write_keys(nodes, 3000)
    master, replica = master_and_replica(nodes)
    keys_on_master = master.client().dbsize()
    restarted = _resync_slowly(master, replica, delay=3)

    why = _not_ready(replica)  # a rolling update would not have moved on to the master
    done, took = _timed_prestop(master, budget=20)
    synced = time.monotonic() - restarted

    assert why.startswith("replica: "), why
    assert done.returncode == 0
    assert "waiting for" in done.stdout, done.stdout
    assert f"handed over to {_bracketed(replica)}" in done.stdout, done.stdout
    assert _role(master) == "slave"
    assert _role(replica) == "master"
    assert replica.client().dbsize() == keys_on_master
    wait_for(lambda: read_back(nodes, data) == {}, timeout=20, what="every key to be readable")
    print(
        f"\npreStop during a full sync: replica not ready ({why}); preStop took {took:.2f} s, "
        f"done {synced:.2f} s after the replica restarted (sync held back 3 s); {keys_on_master} keys kept"
    )
    print(done.stdout, end="")


def test_prestop_gives_up_waiting_for_a_syncing_replica_at_its_budget(make_nodes):
    nodes = make_nodes(6)
    form(nodes, 3, 1, timeout=60)
    master, replica = master_and_replica(nodes)
    _resync_slowly(master, replica, delay=60)  # the replica cannot come online within the budget

    done, took = _timed_prestop(master, budget=3)

    assert done.returncode == 0
    assert "waiting for" in done.stdout, done.stdout
    assert "no replica came online within 3 s" in done.stdout, done.stdout
    assert 3 - 0.5 < took < 3 + 2  # it waited, and by the clock
    assert _role(master) == "master"
    print(f"\npreStop budget 3 s, replica never online: returned after {took:.2f} s")


def test_prestop_stays_within_its_budget_when_the_replica_hangs(make_nodes):
    nodes = make_nodes(6)
    form(nodes, 3, 1, timeout=60)
    master, replica = master_and_replica(nodes)
    assert replica.process is not None
    replica.process.send_signal(signal.SIGSTOP)  # connects, never answers: CLUSTER FAILOVER would hang
    try:
        done, took = _timed_prestop(master, budget=3, timeout=30)
        role_after = _role(master)
    finally:
        # It then runs the CLUSTER FAILOVER still in its socket buffer: the stop came too late for it.
        replica.process.send_signal(signal.SIGCONT)

    assert done.returncode == 0
    assert "handed over" not in done.stdout, done.stdout
    assert "no answer" in done.stdout, done.stdout
    assert took < 3 + 2
    assert role_after == "master"
    print(f"\npreStop budget 3 s, replica hung: returned after {took:.2f} s")


def test_prestop_hands_over_between_ipv6_nodes(make_nodes):
    nodes = make_nodes(6, ipv6=True)  # every node on ::1: INFO replication says ip=::1
    form(nodes, 3, 1, timeout=60)
    data = write_keys(nodes, 500)
    master, replica = master_and_replica(nodes)
    assert {r["ip"] for r in _replicas_seen_by(master)} == {"::1"}

    done, took = _timed_prestop(master, budget=20)

    assert done.returncode == 0
    assert f"handed over to [::1]:{replica.port}" in done.stdout, done.stdout
    assert _role(master) == "slave"
    assert _role(replica) == "master"
    wait_for(lambda: read_back(nodes, data) == {}, timeout=20, what="every key to be readable")
    print(f"\npreStop on IPv6: handed over in {took:.2f} s")


# --- the Python twin of the preStop (the `--nodes` graceful drill) ------------------------------------


def test_hand_over_waits_for_a_syncing_replica_and_speaks_ipv6(make_nodes):
    nodes = make_nodes(6, ipv6=True)
    form(nodes, 3, 1, timeout=60)
    master, replica = master_and_replica(nodes)
    _resync_slowly(master, replica, delay=2)
    connector = Connector()
    try:
        started = time.monotonic()
        demoted = hand_over(connector, master.address, timeout=20)
        took = time.monotonic() - started
    finally:
        connector.close()

    assert demoted
    assert _role(master) == "slave"
    assert _role(replica) == "master"
    print(f"\nhand_over during a full sync on IPv6: {took:.2f} s")


def test_hand_over_gives_up_at_its_timeout_and_without_a_replica(make_nodes):
    nodes = make_nodes(6)
    form(nodes, 3, 1, timeout=60)
    master, replica = master_and_replica(nodes)
    other, other_replica = _other_shard(nodes, master)
    _resync_slowly(master, replica, delay=60)
    other_replica.stop(kill=True)
    wait_for(lambda: not _replicas_seen_by(other), timeout=20, what="the replica link to drop")
    connector = Connector()
    try:
        started = time.monotonic()
        syncing = hand_over(connector, master.address, timeout=3)
        waited = time.monotonic() - started
        started = time.monotonic()
        alone = hand_over(connector, other.address, timeout=3)
        alone_took = time.monotonic() - started
    finally:
        connector.close()

    assert not syncing
    assert 3 - 0.5 < waited < 3 + 2
    assert not alone
    assert alone_took < 1
    assert _role(master) == "master"
    assert _role(other) == "master"
    print(f"\nhand_over, timeout 3 s: replica syncing {waited:.2f} s, no replica {alone_took:.2f} s")


# --- readiness ---------------------------------------------------------------------------------------


def test_readiness_is_ready_before_formation_and_when_the_cluster_is_ok(make_nodes):
    nodes = make_nodes(6)
    assert _ready(nodes.nodes[0])  # alone: the hook has not run yet

    form(nodes, 3, 1, timeout=60)

    assert all(_ready(node) for node in nodes.nodes)  # masters serving slots, replicas in sync


def test_readiness_of_a_replica_waits_for_its_full_sync(make_nodes):
    nodes = make_nodes(6)
    form(nodes, 3, 1, timeout=60)
    write_keys(nodes, 1000)
    master, replica = master_and_replica(nodes)
    restarted = _resync_slowly(master, replica, delay=2)

    why = _not_ready(replica)
    synced = _replica_online_after(master, restarted)
    wait_for(lambda: _ready(replica), timeout=10, what="the replica to be ready")
    ready_after = time.monotonic() - restarted

    assert why.startswith("replica: "), why
    assert replica.client().info("replication")["master_link_status"] == "up"
    print(f"\nreplica restart: not ready ({why}), online {synced:.2f} s, ready {ready_after:.2f} s after")


def test_readiness_of_an_empty_master_that_joined_a_cluster(make_nodes):
    nodes = make_nodes(6)
    form(nodes, 3, 1, timeout=60)
    (newcomer,) = make_nodes(1).nodes
    newcomer.client().execute_command("CLUSTER", "MEET", nodes.nodes[0].ip, nodes.nodes[0].port)
    wait_for(
        lambda: newcomer.client().execute_command("CLUSTER", "INFO").count("cluster_known_nodes:7"),
        timeout=10,
        what="the newcomer to know the cluster",
    )

    assert _ready(newcomer)  # no slots yet: waiting for the hook to move some


def test_readiness_keeps_masters_ready_when_another_whole_shard_is_down(make_nodes):
    nodes = make_nodes(6, node_timeout=2000)
    form(nodes, 3, 1, timeout=60)
    master, replica = master_and_replica(nodes)
    other, other_replica = _other_shard(nodes, master)
    other_id = next(v.node_id for v in views_of(nodes) if v.address == str(other.address))
    other.stop(kill=True)
    other_replica.stop(kill=True)
    killed = time.monotonic()
    connector = Connector()

    def other_marked_fail() -> bool:
        view = read_view(connector, master.address)
        return "fail" in view.by_id()[other_id].flags and view.cluster_info["cluster_state"] == "fail"

    wait_for(other_marked_fail, timeout=30, what=f"the cluster to mark {other.address} fail")
    flagged = time.monotonic() - killed

    assert _ready(master)  # it still serves its slots and answers CLUSTER SLOTS
    assert _ready(replica)
    connector.close()
    print(f"\nwhole shard killed: marked fail after {flagged:.2f} s; the other masters stay ready")


def test_readiness_fails_when_the_node_sees_the_cluster_down(make_nodes):
    nodes = make_nodes(6)
    form(nodes, 3, 1, timeout=60)
    roles = {
        n.hostname: ("master" if v.myself.slots else "replica")
        for n, v in zip(nodes.nodes, views_of(nodes), strict=True)
    }
    _restart_on_new_addresses_without_the_start_step(nodes)  # peers pfail, never fail

    for node in nodes.nodes:
        why = _not_ready(node)
        if roles[node.hostname] == "master":
            assert why.startswith("master: cluster_state:fail"), why
        else:
            assert why == "replica: master_link_status:down", why


def test_readiness_while_loading_the_dataset(make_nodes):
    (node,) = make_nodes(1).nodes
    client = node.client()
    client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
    wait_for(lambda: client.cluster("INFO")["cluster_state"] == "ok", timeout=10, what="slots to be served")
    pipe = client.pipeline(transaction=False)
    for index in range(2000):
        pipe.set(f"{{load}}:{index}", index)
    pipe.execute()
    client.bgrewriteaof()  # the keys into the AOF's RDB base, which key-load-delay slows down
    wait_for(lambda: client.info("persistence")["aof_rewrite_in_progress"] == 0, timeout=10, what="rewrite")
    node.stop()
    plain = node.config
    node.config = lambda: plain() + "key-load-delay 1000\nloading-process-events-interval-bytes 1024\n"
    node.start()  # 2000 keys x 1 ms: about 2 s of loading, answering meanwhile

    def listening_why() -> str | None:
        why = _not_ready(node)  # fails if the load is over before the probe could see it
        return None if "Connection refused" in why else why

    why = wait_for(listening_why, timeout=10, interval=0.02, what="the node to listen while loading")
    wait_for(lambda: _ready(node), timeout=20, what="the load to end")

    assert why == "loading the dataset", why


def test_readiness_of_a_node_that_does_not_answer(make_nodes):
    (node,) = make_nodes(1).nodes
    node.stop(kill=True)

    assert "no PONG" in _not_ready(node)


def test_probes_log_in_from_the_password_file(make_nodes, tmp_path):
    """As in the pods: user admin, the passwords in a file (a rotation under way: the first line is not
    accepted yet, the second is)."""
    nodes = make_nodes(6, users=TEST_USERS)
    form(nodes, 3, 1, login=ADMIN, timeout=60)
    master, replica = master_and_replica(nodes, login=ADMIN)
    password_file = tmp_path / "admin-password"
    password_file.write_text("not-applied-yet\nadmin-pw\n")
    login = {"REDIS_USERNAME": "admin", "REDIS_PASSWORD_FILE": str(password_file)}

    without = _run_script("readiness.sh", master)
    ready = [_run_script("readiness.sh", node, **login).returncode for node in nodes.nodes]
    done = _run_script("prestop.sh", master, PRESTOP_TIMEOUT_SECONDS="20", **login)

    assert without.returncode == 1
    assert without.stdout.startswith("no PONG: NOAUTH"), without.stdout
    assert ready == [0] * 6
    assert f"handed over to {replica.ip}:{replica.port}" in done.stdout, done.stdout
