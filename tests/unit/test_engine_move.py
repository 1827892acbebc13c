"""The rules that refuse a rolling move between engines (helm_redis.engine_move). The formats and the
load matrix they encode are checked against the real servers in tests/local/test_engines.py; here: the
moves they allow and refuse, the refusal's words, and `--version` parsing of the four real engines."""

from pathlib import Path

import pytest

from helm_redis.engine import ServerInfo
from helm_redis.engine_move import RdbFormat, loads, move_refusal, parse_version_line, rdb_written

INFO = Path(__file__).parent / "info"
REDIS_70 = ServerInfo("redis", (7, 0, 15))
REDIS_80 = ServerInfo("redis", (8, 0, 6))
VALKEY_81 = ServerInfo("valkey", (8, 1, 1))
VALKEY_91 = ServerInfo("valkey", (9, 1, 2))
ENGINES = {"redis-7.0": REDIS_70, "redis-8.0": REDIS_80, "valkey-8.1": VALKEY_81, "valkey-9.1": VALKEY_91}

# from -> to: may a release running `from` roll to `to`? (the measured strict load matrix, read by column)
ALLOWED = {
    "redis-7.0": {"redis-7.0", "redis-8.0", "valkey-8.1", "valkey-9.1"},
    "redis-8.0": {"redis-8.0"},
    "valkey-8.1": {"redis-8.0", "valkey-8.1", "valkey-9.1"},
    "valkey-9.1": {"valkey-9.1"},
}


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_version_line_of_each_real_engine(name):
    assert parse_version_line((INFO / f"{name}.version.txt").read_text()) == ENGINES[name]


def test_a_line_that_is_no_version_is_refused_naming_it():
    with pytest.raises(ValueError, match="sh: 1: valkey-server: not found"):
        parse_version_line("sh: 1: valkey-server: not found\n")


@pytest.mark.parametrize("source", sorted(ENGINES))
@pytest.mark.parametrize("target", sorted(ENGINES))
def test_moves_between_the_four_engines(source, target):
    refusal = move_refusal([ENGINES[source]], ENGINES[target])
    assert (refusal is None) == (target in ALLOWED[source]), refusal


def test_the_refusal_names_the_target_the_blocking_engine_its_format_and_the_fix():
    refusal = move_refusal([VALKEY_91, VALKEY_91, REDIS_70], REDIS_70)
    assert refusal is not None
    assert refusal.startswith("redis 7.0.15 cannot load")
    assert "valkey 9.1.2 (RDB VALKEY080)" in refusal and "redis 7.0.15 (RDB" not in refusal
    assert "Keep image.engine/repository/tag" in refusal


def test_a_half_done_move_can_go_on_but_not_back():
    half = [REDIS_70, REDIS_70, VALKEY_91]
    assert move_refusal(half, VALKEY_91) is None
    assert move_refusal(half, REDIS_70) is not None


def test_patch_versions_of_one_line_move_both_ways():
    assert move_refusal([REDIS_70], ServerInfo("redis", (7, 0, 11))) is None
    assert move_refusal([ServerInfo("redis", (7, 0, 11))], REDIS_70) is None


def test_formats_of_versions_between_and_after_the_tested_ones():
    assert rdb_written(ServerInfo("redis", (6, 2, 14))) == RdbFormat("REDIS", 9)
    assert rdb_written(ServerInfo("redis", (7, 2, 5))) == RdbFormat("REDIS", 11)
    assert rdb_written(ServerInfo("redis", (7, 4, 2))) == RdbFormat("REDIS", 12)
    assert rdb_written(ServerInfo("valkey", (9, 0, 0))) == RdbFormat("VALKEY", 80)
    assert str(rdb_written(VALKEY_91)) == "VALKEY080" and str(rdb_written(REDIS_70)) == "REDIS0010"
    assert loads(ServerInfo("valkey", (7, 2, 5)), rdb_written(ServerInfo("redis", (7, 2, 4))))
