"""The start step's rewrite of nodes.conf: stale peer IPs replaced from their hostnames."""

import pytest

from helm_redis.errors import CorruptNodesConf
from helm_redis.nodesconf import check_nodes_conf, prepare_nodes_conf, rewrite_addresses, write_durably

CONF = (
    "aaaa 10.0.0.1:6379@16379,redis-0.h.ns.svc.cluster.local myself,master - 0 0 1 connected 0-5460\n"
    "bbbb 10.0.0.2:6379@16379,redis-1.h.ns.svc.cluster.local master - 0 0 2 connected 5461-16383\n"
    "cccc 10.0.0.3:6379@16379, slave bbbb 0 0 2 connected\n"
    "vars currentEpoch 2 lastVoteEpoch 0\n"
)
NEW = {"redis-0.h.ns.svc.cluster.local": "10.0.9.1", "redis-1.h.ns.svc.cluster.local": "10.0.9.2"}

# As Redis 7.0 writes it: 40-character node IDs, every line ending in a newline, the vars line last.
ID_A, ID_B, ID_C = "a" * 40, "b" * 40, "c" * 40
REDIS_CONF = (
    f"{ID_A} 10.0.0.1:6379@16379,redis-0.h.ns.svc.cluster.local myself,master - 0 0 1 connected 0-5460\n"
    f"{ID_B} 10.0.0.2:6379@16379,redis-1.h.ns.svc.cluster.local master - 0 1700000000000 2 connected "
    "5461-16383\n"
    f"{ID_C} 10.0.0.3:6379@16379, slave {ID_B} 0 1700000000000 2 connected\n"
    "vars currentEpoch 2 lastVoteEpoch 0\n"
)


def test_every_resolvable_hostname_gets_its_new_ip_and_the_rest_stays():
    rewrite = rewrite_addresses(CONF, NEW.get)
    lines = rewrite.text.splitlines()
    assert lines[0].startswith("aaaa 10.0.9.1:6379@16379,redis-0.h.ns.svc.cluster.local myself,master")
    assert lines[1].startswith("bbbb 10.0.9.2:6379@16379,redis-1.h.ns.svc.cluster.local master")
    assert lines[2] == CONF.splitlines()[2]  # no hostname stored: left alone
    assert lines[3] == "vars currentEpoch 2 lastVoteEpoch 0"
    assert rewrite.changed == {
        "redis-0.h.ns.svc.cluster.local": ("10.0.0.1", "10.0.9.1"),
        "redis-1.h.ns.svc.cluster.local": ("10.0.0.2", "10.0.9.2"),
    }


def test_an_unresolvable_peer_keeps_its_old_ip_after_the_bounded_wait(tmp_path):
    path = tmp_path / "nodes.conf"
    path.write_text(REDIS_CONF)
    only_first = {"redis-0.h.ns.svc.cluster.local": "10.0.9.1"}

    rewrite = prepare_nodes_conf(
        path, timeout=0.3, resolve=only_first.get, progress=lambda _m: None, interval=0.1
    )

    assert rewrite is not None and rewrite.unresolved == ["redis-1.h.ns.svc.cluster.local"]
    assert "10.0.9.1:6379" in path.read_text() and "10.0.0.2:6379" in path.read_text()


def test_a_peer_that_resolves_late_is_waited_for(tmp_path):
    path = tmp_path / "nodes.conf"
    path.write_text(REDIS_CONF)
    calls = {"n": 0}

    def slow(hostname: str) -> str | None:
        calls["n"] += 1
        return NEW[hostname] if calls["n"] > 4 else None

    rewrite = prepare_nodes_conf(path, timeout=10, resolve=slow, progress=lambda _m: None, interval=0.01)

    assert rewrite is not None and not rewrite.unresolved
    assert "10.0.9.2:6379" in path.read_text()


def test_a_fresh_node_has_nothing_to_prepare(tmp_path):
    assert prepare_nodes_conf(tmp_path / "nodes.conf", 1, progress=lambda _m: None) is None
    assert not (tmp_path / "nodes.conf").exists()


# --- a durable rewrite ------------------------------------------------------------------------------------


def test_a_rewrite_replaces_the_file_and_leaves_no_temporary_file_behind(tmp_path):
    path = tmp_path / "nodes.conf"
    path.write_text(REDIS_CONF)
    path.chmod(0o640)

    rewrite = prepare_nodes_conf(path, timeout=1, resolve=NEW.get, progress=lambda _m: None)

    assert rewrite is not None and rewrite.changed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nodes.conf"]
    assert path.read_text() == rewrite_addresses(REDIS_CONF, NEW.get).text
    assert path.read_text().splitlines()[0].startswith(f"{ID_A} 10.0.9.1:6379@16379,redis-0.")
    assert path.stat().st_mode & 0o777 == 0o640


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary_file(tmp_path):
    path = tmp_path / "nodes.conf"
    path.write_text(REDIS_CONF)

    with pytest.raises(UnicodeEncodeError):
        write_durably(path, "a lone surrogate cannot be encoded: \ud800")

    assert path.read_text() == REDIS_CONF
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nodes.conf"]


# --- a corrupt file: one line naming the file, the line, what is wrong, and the fix ------------------------


def _problem(tmp_path, data: bytes) -> str:
    path = tmp_path / "nodes.conf"
    path.write_bytes(data)
    with pytest.raises(CorruptNodesConf) as raised:
        prepare_nodes_conf(path, timeout=0, resolve=NEW.get, progress=lambda _m: None)
    message = str(raised.value)
    assert len(message.splitlines()) == 1, message
    assert message.startswith(f"{path}: ")
    assert f"mv {path} {path}.corrupt" in message and "new node ID" in message and "helm upgrade" in message
    assert path.read_bytes() == data  # never rewritten
    assert raised.value.exit_code == 2
    return message


def test_a_file_written_by_redis_passes_the_check(tmp_path):
    assert check_nodes_conf(tmp_path / "nodes.conf", REDIS_CONF.encode()) == REDIS_CONF


def test_a_line_cut_in_the_middle_is_named_with_its_number(tmp_path):
    cut = REDIS_CONF[: REDIS_CONF.index("5461-16383") + 4]  # the second line ends in "5461-16"

    message = _problem(tmp_path, cut.encode())

    assert "line 2 is cut off (no newline at its end" in message
    assert f"CLUSTER FORGET {ID_A}" in message  # the node's own ID, from its intact myself line


def test_a_line_with_missing_fields_is_named_with_its_number(tmp_path):
    lines = REDIS_CONF.splitlines(keepends=True)
    lines[1] = " ".join(lines[1].split()[:5]) + "\n"

    message = _problem(tmp_path, "".join(lines).encode())

    assert "line 2 has 5 of the 8 fields of a node line" in message


def test_garbage_is_named_with_its_line_number(tmp_path):
    message = _problem(tmp_path, (REDIS_CONF + "}}} not a node line at all\n").encode())

    assert "line 5 does not start with a node ID" in message


def test_bytes_that_are_not_text_are_named_with_their_line(tmp_path):
    message = _problem(tmp_path, REDIS_CONF.encode()[:200] + b"\xff\xfe\x00garbage\n")

    assert "line 2 is not text (byte 0xff)" in message


def test_blocks_of_nul_bytes_are_named(tmp_path):
    message = _problem(tmp_path, REDIS_CONF.encode() + b"\0" * 64 + b"\n")

    assert "line 5 holds NUL bytes" in message


def test_a_slot_outside_the_range_is_named(tmp_path):
    message = _problem(tmp_path, REDIS_CONF.replace("5461-16383", "5461-16384").encode())

    assert "line 2 has slot range '5461-16384' outside 0-16383" in message


def test_a_file_without_its_myself_line_is_refused(tmp_path):
    without_myself = "".join(REDIS_CONF.splitlines(keepends=True)[1:])

    message = _problem(tmp_path, without_myself.encode())

    assert "no line is flagged myself" in message
    assert "CLUSTER FORGET the old node ID (the one they flag fail)" in message


def test_an_empty_file_is_refused(tmp_path):
    message = _problem(tmp_path, b"")

    assert "the file is empty (0 bytes" in message
    assert "Redis would silently start this node under a new node ID" in message


def test_a_vars_line_cut_after_a_name_is_named(tmp_path):
    message = _problem(tmp_path, REDIS_CONF.replace("lastVoteEpoch 0", "lastVoteEpoch").encode())

    assert "line 4 is a vars line with a name but no value" in message
