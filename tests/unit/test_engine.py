"""Engine detection from `INFO server` texts captured from the four real engines (tests/unit/info/*.txt:
`redis-cli info server` of Redis 7.0.15, Redis 8.0.6, Valkey 8.1.1 and Valkey 9.1.2 from the tool cache,
each started with `--cluster-enabled yes`)."""

from pathlib import Path

import pytest

from helm_redis.engine import (
    Features,
    ServerInfo,
    common_features,
    mixed,
    parse_server_info,
    parse_version,
)

INFO = Path(__file__).parent / "info"

EXPECTED = {
    "redis-7.0": ServerInfo("redis", (7, 0, 15), "cluster"),
    "redis-8.0": ServerInfo("redis", (8, 0, 6), "cluster"),
    "valkey-8.1": ServerInfo("valkey", (8, 1, 1), "cluster"),
    "valkey-9.1": ServerInfo("valkey", (9, 1, 2), "cluster"),
}

FEATURES = {
    "redis-7.0": {"addslotsrange", "shards"},
    "redis-8.0": {"addslotsrange", "shards"},
    "valkey-8.1": {"addslotsrange", "shards", "availability_zone"},
    "valkey-9.1": {"addslotsrange", "shards", "availability_zone", "atomic_slot_migration"},
}


def captured(name: str) -> str:
    return (INFO / f"{name}.txt").read_text()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_captured_engine_is_detected_with_its_own_version(name):
    assert parse_server_info(captured(name)) == EXPECTED[name]


@pytest.mark.parametrize("name", ["valkey-8.1", "valkey-9.1"])
def test_valkey_version_never_comes_from_its_redis_version(name):
    text = captured(name)
    assert "redis_version:7.2.4" in text  # what Valkey reports for compatibility, whatever its version
    assert parse_server_info(text).version != (7, 2, 4)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_engine_supports_what_its_sources_say(name):
    assert set(parse_server_info(captured(name)).features.names()) == FEATURES[name]


def test_redis_py_parsed_info_gives_the_same_engine():
    """What Connector clients return (redis-py's dict, values possibly not strings) parses the same."""
    as_dict = {"redis_version": "7.0.15", "redis_mode": "cluster", "tcp_port": 6379}
    assert parse_server_info(as_dict) == EXPECTED["redis-7.0"]
    valkey = {"redis_version": "7.2.4", "server_name": "valkey", "valkey_version": "9.1.2"}
    assert parse_server_info(valkey) == ServerInfo("valkey", (9, 1, 2), "")


def test_an_old_redis_lacks_the_7_0_commands():
    assert parse_server_info("redis_version:6.2.14\r\nredis_mode:cluster\r\n").features == Features()


def test_server_name_valkey_without_its_version_is_an_error_not_a_guess():
    with pytest.raises(ValueError, match="valkey_version"):
        parse_server_info("redis_version:7.2.4\nserver_name:valkey\n")
    with pytest.raises(ValueError, match="neither"):
        parse_server_info("# Server\nos:Linux\n")


def test_versions_with_suffixes():
    assert parse_version("8.0.0-rc1") == (8, 0, 0)
    assert parse_version("255.255.255") == (255, 255, 255)
    with pytest.raises(ValueError):
        parse_version("unstable")


def test_the_common_subset_of_a_mixed_set_is_what_every_node_supports():
    infos = [parse_server_info(captured(name)) for name in ("redis-7.0", "valkey-9.1")]
    assert common_features(infos) == Features(addslotsrange=True, shards=True)
    assert mixed(infos)
    nine = [EXPECTED["valkey-9.1"], EXPECTED["valkey-9.1"]]
    assert common_features(nine).atomic_slot_migration and not mixed(nine)
    assert common_features([]) == Features()
