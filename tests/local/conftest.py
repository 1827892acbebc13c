"""Fixtures: real server processes on loopback (distinct 127.0.B.x addresses stand in for pod IPs), on one of
the engines of tests/engines.py (Redis 7.0 and 8.0, Valkey 8.1 and 9.1, from the tool cache).

Every test runs on the default engine, redis-7.0 (the Redis 7.0.15 the chart ships). The tests named in
EVERY_ENGINE below also run on each other engine (`engine` parameter, ids redis-7.0, redis-8.0, valkey-8.1,
valkey-9.1; RCH_ENGINES narrows them): the whole matrix of every test would double the local stage's time,
so the other engines get the tests that exercise what differs between engines.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from helm_redis.localnodes import LocalNodes
from tests.engines import Engine, engine_names
from tests.engines import engine as find_engine

DEFAULT_ENGINE = "redis-7.0"

# module -> test -> what in it depends on the engine. The formation, restart-on-new-addresses, preStop
# handover, verify and drill suites each have representatives here; the rest of each suite is logic of ours
# above the same commands (planning, deadlines, refusals, output), run on the default engine only.
EVERY_ENGINE: dict[str, dict[str, str]] = {
    "test_formation.py": {
        "test_three_masters_get_the_standard_slot_ranges": "ADDSLOTSRANGE, SET-CONFIG-EPOCH, MEET, REPLICATE",
        "test_second_and_tenth_run_change_nothing": "re-runs read the formed cluster back (CLUSTER NODES)",
        "test_scale_out_from_6_to_8_nodes_moves_slots_and_keeps_every_key": "slot moves: SETSLOT, MIGRATE",
        "test_formation_with_acl_users": "ACL, masteruser/masterauth (Valkey: primaryuser/primaryauth)",
    },
    "test_restart_and_handover.py": {
        "test_all_nodes_restarted_on_new_addresses_reform_with_the_same_ids_and_keys": (
            "the start step rewrites nodes.conf as each engine writes it, and the engine reloads it"
        ),
        "test_prestop_hands_a_masters_slots_to_its_replica_while_writes_continue": (
            "preStop through the engine's own CLI: CLUSTER FAILOVER, replication offsets, under writes"
        ),
        "test_prestop_waits_for_a_replica_in_full_sync_then_hands_over_every_key": "INFO during a full sync",
        "test_readiness_of_a_replica_waits_for_its_full_sync": "readiness parses INFO replication",
        "test_readiness_fails_when_the_node_sees_the_cluster_down": "readiness parses CLUSTER INFO",
    },
    "test_verify.py": {
        "test_a_healthy_cluster_passes_every_check": "every check: INFO, CLUSTER NODES, CONFIG GET, ACL",
        "test_cli_verify_json_and_exit_codes": "the CLI's JSON, with the engine of every node",
        "test_a_replica_with_its_link_down_fails_replica_links": "master_link_status of INFO replication",
    },
    "test_drill.py": {
        "test_drill_promotes_the_replica_and_the_old_master_rejoins_with_its_id": (
            "failover after a crash and after SIGTERM, rejoin with the same node ID"
        ),
        "test_hang_drill_is_an_election_after_the_node_timeout_and_the_old_master_wakes_as_replica": (
            "DEBUG SLEEP (enable-debug-command) and an election"
        ),
    },
}


def _chosen(definition: pytest.Function | pytest.Metafunc) -> bool:
    module = Path(str(definition.module.__file__)).name
    return definition.function.__name__ in EVERY_ENGINE.get(module, {})


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "engine" in metafunc.fixturenames and _chosen(metafunc):
        names = engine_names()
        metafunc.parametrize("engine", names, ids=names, indirect=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A name in EVERY_ENGINE that is no test function of its module (renamed, removed) is an error, not a
    silent gap in the matrix."""
    modules = {
        Path(str(item.module.__file__)).name: item.module
        for item in items
        if isinstance(item, pytest.Function)
    }
    stale = [
        f"{name}::{test}"
        for name, tests in EVERY_ENGINE.items()
        if name in modules
        for test in tests
        if not callable(getattr(modules[name], test, None))
    ]
    if stale:
        raise pytest.UsageError(f"tests/local/conftest.py EVERY_ENGINE names no test: {stale}")


@pytest.fixture
def engine(request: pytest.FixtureRequest) -> Engine:
    """The engine the nodes of this test run: the parameter, or the default engine."""
    return find_engine(getattr(request, "param", DEFAULT_ENGINE))  # EngineMissing names ci/engines/fetch.sh


@pytest.fixture
def make_nodes(tmp_path: Path, engine: Engine) -> Iterator[Callable[..., LocalNodes]]:
    """Start sets of fresh cluster-mode nodes on `engine`; every process is killed at the end of the test."""
    started: list[LocalNodes] = []

    def make(count: int, **options: object) -> LocalNodes:
        options.setdefault("server", engine.server)
        nodes = LocalNodes(tmp_path / f"set-{len(started)}", count, **options)  # type: ignore[arg-type]
        started.append(nodes)
        nodes.start()
        return nodes

    yield make
    for nodes in started:
        nodes.stop(kill=True)


@pytest.fixture
def cluster(make_nodes) -> LocalNodes:
    """Six nodes formed into 3 masters with one replica each."""
    from .helpers import form

    nodes = make_nodes(6)
    form(nodes, 3, 1, timeout=60)
    return nodes
