"""Every engine of issue 13 (ci/engines/engines.env) as a real process on loopback: it runs from the tool
cache under its own loader, answers INFO server with its pinned version, starts cluster-enabled (with TLS
too), and supports exactly the features ci/engines/README.md's table says. The RDB each one writes, and
which of the others load it, is checked against the README's migration table. An engine missing from the
cache fails (naming ci/engines/fetch.sh); it is never skipped."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from helm_redis.engine import Features, common_features, read_server_infos
from helm_redis.engine_move import loads, rdb_written
from helm_redis.localnodes import LocalNodes, free_ports
from helm_redis.nodes import Connector
from tests.certs import issue, make_ca
from tests.cli import run_cli
from tests.engines import Engine, engine, engine_names

HOST = "127.0.0.1"
NO_RETRY = Retry(NoBackoff(), 0)  # the waits below poll; redis-py's own retries would back off for seconds
NAMES = engine_names()

# The feature table of ci/engines/README.md (sources there). bus-protected-config: any config key for a
# protected mode of the cluster bus (none of the four has one: protected-mode covers client connections).
FEATURES: dict[str, dict[str, bool]] = {
    "redis-7.0": {
        "addslotsrange": True,
        "announce-hostname": True,
        "shards": True,
        "migrateslots": False,
        "availability-zone": False,
        "availability-zone-in-shards": False,
        "bus-protected-config": False,
    },
    "redis-8.0": {
        "addslotsrange": True,
        "announce-hostname": True,
        "shards": True,
        "migrateslots": False,
        "availability-zone": False,
        "availability-zone-in-shards": False,
        "bus-protected-config": False,
    },
    "valkey-8.1": {
        "addslotsrange": True,
        "announce-hostname": True,
        "shards": True,
        "migrateslots": False,
        "availability-zone": True,
        "availability-zone-in-shards": False,
        "bus-protected-config": False,
    },
    "valkey-9.1": {
        "addslotsrange": True,
        "announce-hostname": True,
        "shards": True,
        "migrateslots": True,
        "availability-zone": True,
        "availability-zone-in-shards": True,
        "bus-protected-config": False,
    },
}

# The first 9 bytes of the RDB each engine writes (magic + format version; src/rdb.h RDB_VERSION).
RDB_MAGIC = {
    "redis-7.0": b"REDIS0010",
    "redis-8.0": b"REDIS0012",
    "valkey-8.1": b"REDIS0011",
    "valkey-9.1": b"VALKEY080",
}

# Which engine loads which engine's RDB (writer -> loaders), with the default rdb-version-check (strict), and
# the extra loaders that accept it with Valkey's `rdb-version-check relaxed`.
RDB_LOADS = {
    "redis-7.0": {"redis-7.0", "redis-8.0", "valkey-8.1", "valkey-9.1"},
    "redis-8.0": {"redis-8.0"},
    "valkey-8.1": {"redis-8.0", "valkey-8.1", "valkey-9.1"},
    "valkey-9.1": {"valkey-9.1"},
}
RDB_LOADS_RELAXED = {
    "redis-7.0": set(),
    "redis-8.0": {"valkey-9.1"},
    "valkey-8.1": set(),
    "valkey-9.1": {"valkey-8.1"},
}


@pytest.fixture(params=NAMES)
def any_engine(request: pytest.FixtureRequest) -> Engine:
    return engine(request.param)  # EngineMissing (a failure) when it is not in the cache


class Servers:
    """Server processes on 127.0.0.1, each in its own directory; all killed at the end of the test."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, eng: Engine, name: str, *args: str, wait: bool = True) -> tuple[redis.Redis, Path]:
        directory = self.base / name
        directory.mkdir(parents=True, exist_ok=True)
        (port,) = free_ports(HOST, 1)
        command = [str(eng.server), "--bind", HOST, "--port", str(port), "--dir", str(directory)]
        command += ["--logfile", str(directory / "server.log"), "--save", "", "--appendonly", "no", *args]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self.processes.append(process)
        client = redis.Redis(HOST, port, socket_timeout=10, decode_responses=True, retry=NO_RETRY)
        if wait:
            self.wait(client, process, directory)
        client.process = process  # type: ignore[attr-defined]
        return client, directory

    @staticmethod
    def wait(
        client: redis.Redis, process: subprocess.Popen[bytes], directory: Path, timeout: float = 15
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited {process.returncode}: {_tail(directory / 'server.log')}")
            try:
                if client.ping():
                    return
            except (redis.ConnectionError, redis.BusyLoadingError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"server did not answer in {timeout}s: {_tail(directory / 'server.log')}")

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)


def _tail(log: Path, lines: int = 3) -> str:
    return " | ".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else "(no log)"


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    started = Servers(tmp_path)
    yield started
    started.stop()


def info_version(client: redis.Redis) -> tuple[str, str]:
    """(family, version) from INFO server: Valkey reports valkey_version (and redis_version 7.2.4)."""
    info = client.info("server")
    if "valkey_version" in info:
        return "valkey", str(info["valkey_version"])
    return "redis", str(info["redis_version"])


def has_command(client: redis.Redis, command: str) -> bool:
    """COMMAND INFO knows `command` ('cluster|shards' for a subcommand); read raw: redis-py's parser of
    COMMAND INFO fails on the nil an unknown command gets."""
    connection = client.connection_pool.get_connection()
    try:
        connection.send_command("COMMAND", "INFO", command)
        reply = connection.read_response()
    finally:
        client.connection_pool.release(connection)
    return bool(reply) and reply[0] is not None


def probe(client: redis.Redis) -> dict[str, bool]:
    """What a cluster-enabled node supports, by asking it (and using each feature it says it has)."""
    config = client.config_get("*")
    features = {
        "addslotsrange": has_command(client, "cluster|addslotsrange"),
        "announce-hostname": "cluster-announce-hostname" in config,
        "shards": has_command(client, "cluster|shards"),
        "migrateslots": has_command(client, "cluster|migrateslots"),
        "availability-zone": "availability-zone" in config,
        "availability-zone-in-shards": False,
        "bus-protected-config": any(
            "protected" in key and key not in ("protected-mode", "enable-protected-configs") for key in config
        ),
    }
    if features["addslotsrange"]:
        assert client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383) in (True, "OK")
    if features["announce-hostname"]:
        client.config_set("cluster-announce-hostname", "node-0.example.test")
    if features["availability-zone"]:
        client.config_set("availability-zone", "zone-a")
        assert client.info("server").get("availability_zone") == "zone-a"
    if features["shards"]:
        shards = client.execute_command("CLUSTER", "SHARDS")
        assert len(shards) == 1, shards
        node = _as_dict(_as_dict(shards[0])["nodes"][0])
        assert _as_dict(shards[0])["slots"] == [0, 16383]
        if features["announce-hostname"]:
            assert node["hostname"] == "node-0.example.test", node
        features["availability-zone-in-shards"] = node.get("availability-zone") == "zone-a"
    return features


def _as_dict(reply: object) -> dict:
    if isinstance(reply, dict):
        return reply
    assert isinstance(reply, list)
    return dict(zip(reply[::2], reply[1::2], strict=True))


def test_engine_runs_cluster_enabled_with_its_features(any_engine: Engine, servers: Servers) -> None:
    client, _ = servers.start(any_engine, "node", "--cluster-enabled", "yes")
    assert info_version(client) == (any_engine.family, any_engine.version)
    server_info = client.info("server")
    assert server_info.get("redis_mode", server_info.get("server_mode")) == "cluster"
    assert probe(client) == FEATURES[any_engine.name]
    deadline = time.monotonic() + 10  # the state is updated by the cluster cron after ADDSLOTSRANGE
    while client.cluster("info")["cluster_state"] != "ok" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.cluster("info")["cluster_state"] == "ok"


def test_engine_serves_tls(any_engine: Engine, servers: Servers, tmp_path: Path) -> None:
    """The Debian builds link OpenSSL: a TLS-only cluster node answers over TLS with the root's libssl."""
    certs = issue(make_ca(tmp_path / "ca"), tmp_path / "certs")
    (port,) = free_ports(HOST, 1)
    tls = ["--tls-port", str(port), "--tls-cert-file", str(certs / "tls.crt"), "--tls-key-file"]
    tls += [str(certs / "tls.key"), "--tls-ca-cert-file", str(certs / "ca.crt"), "--tls-auth-clients", "no"]
    plain, directory = servers.start(
        any_engine, "tls", "--cluster-enabled", "yes", "--tls-cluster", "yes", *tls
    )
    client = redis.Redis(
        HOST, port, ssl=True, ssl_ca_certs=str(certs / "ca.crt"), socket_timeout=10, retry=NO_RETRY
    )
    servers.wait(client, plain.process, directory)  # type: ignore[attr-defined]
    assert info_version(client) == (any_engine.family, any_engine.version)


def _write_rdb(eng: Engine, servers: Servers) -> Path:
    client, directory = servers.start(eng, f"write-{eng.name}")
    client.set("string", "v")
    client.hset("hash", mapping={"a": "1", "b": "2"})
    client.rpush("list", "a", "b", "c")
    client.sadd("set", "a", "b")
    client.zadd("zset", {"a": 1.0, "b": 2.0})
    client.xadd("stream", {"f": "v"})
    client.save()
    return directory / "dump.rdb"


def test_rdb_formats_and_which_engines_load_them(servers: Servers) -> None:
    """Each engine's RDB magic, and the load matrix (strict and relaxed rdb-version-check)."""
    engines = [engine(name) for name in NAMES]
    for writer in engines:
        rdb = _write_rdb(writer, servers)
        assert rdb.read_bytes()[:9] == RDB_MAGIC[writer.name]
        # helm_redis.engine_move's rules, which refuse an engine move, say the same as the real servers
        assert str(rdb_written(writer.server_info)).encode() == RDB_MAGIC[writer.name]
        for loader in engines:
            strict = _loads_copy(loader, rdb, servers, f"load-{writer.name}-by-{loader.name}")
            assert strict == (loader.name in RDB_LOADS[writer.name]), (writer.name, loader.name)
            assert loads(loader.server_info, rdb_written(writer.server_info)) == strict, (
                writer.name,
                loader.name,
            )
            if loader.family == "valkey" and not strict:
                relaxed = _loads_copy(
                    loader,
                    rdb,
                    servers,
                    f"relaxed-{writer.name}-by-{loader.name}",
                    "--rdb-version-check",
                    "relaxed",
                )
                assert relaxed == (loader.name in RDB_LOADS_RELAXED[writer.name]), (writer.name, loader.name)


def _loads_copy(eng: Engine, rdb: Path, servers: Servers, name: str, *args: str) -> bool:
    """Start `eng` on a directory that already holds `rdb`: does it load all six keys?"""
    directory = servers.base / name
    directory.mkdir(parents=True)
    shutil.copy(rdb, directory / "dump.rdb")
    client, _ = servers.start(eng, name, *args, wait=False)
    try:
        servers.wait(client, client.process, directory)  # type: ignore[attr-defined]
    except RuntimeError:
        return False
    return client.dbsize() == 6


def _meet(a: redis.Redis, b: redis.Redis, timeout: float = 20) -> None:
    b_port = b.connection_pool.connection_kwargs["port"]
    a.execute_command("CLUSTER", "MEET", HOST, b_port)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(len(c.cluster("nodes")) == 2 for c in (a, b)) and b.cluster("info")["cluster_state"] == "ok":
            return
        time.sleep(0.1)
    raise TimeoutError("nodes did not meet")


def test_atomic_slot_migration_where_supported(servers: Servers) -> None:
    """CLUSTER MIGRATESLOTS SLOTSRANGE <start> <end> NODE <id> moves slots with their keys (Valkey 9)."""
    atomic = [name for name in NAMES if FEATURES[name]["migrateslots"]]
    if not atomic:
        pytest.fail(f"no engine with CLUSTER MIGRATESLOTS among {NAMES}: the table says valkey-9.1 has it")
    for name in atomic:
        eng = engine(name)
        source, _ = servers.start(eng, f"{name}-source", "--cluster-enabled", "yes")
        target, _ = servers.start(eng, f"{name}-target", "--cluster-enabled", "yes")
        source.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        _meet(source, target)
        for i in range(500):
            source.set(f"key:{i}", i)
        moving = sum(source.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) for slot in range(0, 1001))
        target_id = target.execute_command("CLUSTER", "MYID")
        reply = source.execute_command("CLUSTER", "MIGRATESLOTS", "SLOTSRANGE", 0, 1000, "NODE", target_id)
        assert reply in (True, "OK")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if target.dbsize() == moving and source.dbsize() == 500 - moving:
                break
            time.sleep(0.1)
        assert (target.dbsize(), source.dbsize()) == (moving, 500 - moving)
        jobs = source.execute_command("CLUSTER", "GETSLOTMIGRATIONS")
        assert jobs, "GETSLOTMIGRATIONS lists the job"
        owner = {tuple(s[:2]): s[2][2] for s in source.execute_command("CLUSTER", "SLOTS")}
        assert owner[(0, 1000)] == target_id


def test_helm_redis_detects_each_engine_and_what_it_supports(any_engine: Engine, tmp_path: Path) -> None:
    """helm_redis.engine reads the engine of nodes localnodes starts with the engine's binary: the family and
    the pinned version (a Valkey's never its redis_version 7.2.4), and features that match what the node
    does when asked (FEATURES above, probed by using each one)."""
    with LocalNodes(tmp_path / "nodes", 2, server=any_engine.server) as nodes:
        infos = read_server_infos(Connector(), nodes.addresses)
    assert {(i.family, i.version, i.mode) for i in infos.values()} == {
        (any_engine.family, any_engine.version_info, "cluster")
    }
    probed = FEATURES[any_engine.name]
    assert common_features(infos.values()) == Features(
        addslotsrange=probed["addslotsrange"],
        shards=probed["shards"],
        availability_zone=probed["availability-zone"],
        atomic_slot_migration=probed["migrateslots"],
    )


def test_pre_upgrade_refuses_a_move_the_running_nodes_data_cannot_make(make_nodes, tmp_path: Path) -> None:
    """`helm-redis scale-in --target-engine-file` (the pre-upgrade hook) on formed nodes: Valkey 9.1 nodes
    cannot move to Redis 7.0 (refused, exit 1, one line naming both engines, nothing changed); Redis 7.0
    nodes may move to Valkey 9.1. The file is what the hook's init container writes: the target's own
    `<server> --version`."""
    from tests.local.helpers import fingerprint, form

    def target_file(name: str) -> Path:
        said = subprocess.run(
            [str(engine(name).server), "--version"], capture_output=True, text=True, timeout=30
        )
        path = tmp_path / f"{name}.version"
        path.write_text(said.stdout)
        return path

    def pre_upgrade(nodes: LocalNodes, target: str) -> subprocess.CompletedProcess[str]:
        return run_cli(
            "scale-in", "--nodes", nodes.nodes_option(), "--masters", "3", "--target-engine-file",
            str(target_file(target)),
        )  # fmt: skip

    valkey = make_nodes(6, server=engine("valkey-9.1").server)
    form(valkey, 3, 1, timeout=60)
    before = fingerprint(valkey)
    back = pre_upgrade(valkey, "redis-7.0")
    assert back.returncode == 1, back
    last = back.stderr.strip().splitlines()[-1]
    assert "upgrade refused before anything changed: redis 7.0.15 cannot load" in last, back.stderr
    assert "valkey 9.1.2 (RDB VALKEY080)" in last and "Traceback" not in back.stderr
    assert fingerprint(valkey) == before

    redis7 = make_nodes(6, server=engine("redis-7.0").server)
    form(redis7, 3, 1, timeout=60)
    forward = pre_upgrade(redis7, "valkey-9.1")
    assert forward.returncode == 0, forward.stderr
    assert (
        "engine: redis 7.0.15 -> valkey 9.1.2: valkey 9.1.2 loads the running nodes' data" in forward.stderr
    )
