"""Slot moves by Valkey 9's atomic slot migration (CLUSTER MIGRATESLOTS), and the key-by-key fallback.

Real Valkey 9.1 (and, for the mixed cluster, Valkey 8.1) processes on loopback, from the tool cache
(ci/engines/fetch.sh). Each move is checked from every node's own view: keys all arrive, the target owns
the slots everywhere, nothing is left IMPORTING/MIGRATING, and writes acknowledged during the move are
all there afterwards.
"""

from __future__ import annotations

import threading
import time

import pytest
import redis

from helm_redis.atomic_slots import jobs_of
from helm_redis.errors import UsageError
from helm_redis.formation import members_from_addresses
from helm_redis.nodes import Connector, read_views
from helm_redis.slots import KEYS, SlotMove, move_slots
from tests.engines import engine

from .helpers import ADMIN, TEST_USERS, assert_complete, cluster_client, form, views_of

VALKEY_9 = engine("valkey-9.1")
VALKEY_8 = engine("valkey-8.1")


def _write_mixed(nodes, count: int, login=None) -> dict[str, object]:
    """Strings of a few sizes, hashes, lists, sets and sorted sets; returns what a read must find."""
    client = cluster_client(nodes, login)
    expected: dict[str, object] = {}
    pipe = client.pipeline()
    for i in range(count):
        kind = i % 5
        key = f"m:{kind}:{i}"
        if kind == 0:
            value = f"v{i}" * (1 + i % 50)
            pipe.set(key, value)
        elif kind == 1:
            value = {"a": str(i), "b": "x" * (i % 100)}
            pipe.hset(key, mapping=value)
        elif kind == 2:
            value = [str(j) for j in range(i % 7 + 1)]
            pipe.rpush(key, *value)
        elif kind == 3:
            value = {str(j) for j in range(i % 5 + 1)}
            pipe.sadd(key, *value)
        else:
            value = [(str(j), float(j)) for j in range(i % 4 + 1)]
            pipe.zadd(key, dict(value))
        expected[key] = value
        if len(pipe) >= 500:
            pipe.execute()
    pipe.execute()
    client.close()
    return expected


def _wrong(nodes, expected: dict[str, object], login=None) -> list[str]:
    client = cluster_client(nodes, login)
    wrong = []
    for key, value in expected.items():
        kind = key.split(":")[1]
        found = {
            "0": lambda k: client.get(k),
            "1": lambda k: client.hgetall(k),
            "2": lambda k: client.lrange(k, 0, -1),
            "3": lambda k: client.smembers(k),
            "4": lambda k: client.zrange(k, 0, -1, withscores=True),
            "w": lambda k: client.get(k),
        }[kind](key)
        if found != value:
            wrong.append(key)
    client.close()
    return wrong


class Writer(threading.Thread):
    """Writes `w:w:<i>` keys through a cluster client while a move runs; remembers what was acknowledged.
    Bounded: stops when told, after `limit` writes, or after `seconds`."""

    def __init__(self, nodes, login=None, limit: int = 200_000, seconds: float = 120) -> None:
        super().__init__(daemon=True)
        self.client = cluster_client(nodes, login)
        self.stop = threading.Event()
        self.acknowledged: dict[str, object] = {}
        self.errors: list[str] = []
        self.limit, self.seconds = limit, seconds

    def run(self) -> None:
        deadline = time.monotonic() + self.seconds
        for i in range(self.limit):
            if self.stop.is_set() or time.monotonic() > deadline:
                break
            key = f"w:w:{i}"
            try:
                self.client.set(key, str(i))
                self.acknowledged[key] = str(i)
            except (redis.RedisError, AttributeError) as error:  # not acknowledged: not counted
                # AttributeError: redis-py's cluster client can race its own topology refresh.
                self.errors.append(f"{key}: {error!r}")
            time.sleep(0.001)

    def finish(self) -> dict[str, object]:
        self.stop.set()
        self.join(timeout=30)
        self.client.close()
        return self.acknowledged


def _export_jobs(nodes, login=None) -> list[dict[str, object]]:
    connector = Connector(login)
    members = members_from_addresses(nodes.addresses)
    return [job for m in members for job in jobs_of(connector, m) if job["operation"] == "EXPORT"]


def _assert_no_open_slots_and_agreement(nodes, login=None) -> None:
    views = views_of(nodes, login)
    assert all(not v.open_slots() for v in views), [v.open_slots() for v in views]
    assert len({v.signature() for v in views}) == 1, "nodes disagree on the slot map"


def test_scale_out_on_valkey_9_moves_slots_atomically_and_loses_no_write(make_nodes):
    nodes = make_nodes(6, server=VALKEY_9.server)
    form(nodes, 3, 1, timeout=60)
    data = _write_mixed(nodes, 5000)
    nodes.nodes += make_nodes(2, server=VALKEY_9.server).nodes
    writer = Writer(nodes)
    writer.start()
    time.sleep(0.3)

    messages: list[str] = []
    result = form(nodes, 4, 1, timeout=120, progress=messages.append)
    written = writer.finish()

    assert any("moved" in action for action in result.actions)
    assert any("atomic slot migration" in m and "started" in m for m in messages), messages
    jobs = _export_jobs(nodes)
    assert jobs and all(job["state"] == "success" for job in jobs), jobs
    assert_complete(nodes, 4, 1)
    _assert_no_open_slots_and_agreement(nodes)
    counts = sorted(v.myself.slot_count for v in views_of(nodes) if v.myself.slots)
    assert counts == [4096, 4096, 4096, 4096]
    assert _wrong(nodes, data) == []
    assert len(written) > 100, f"the writer got few writes through: {writer.errors[:3]}"
    assert _wrong(nodes, written) == []
    assert sum(v.keys for v in views_of(nodes) if v.myself.slots) == len(data) + len(written)


def test_scale_in_on_valkey_9_drains_atomically(make_nodes):
    from helm_redis.scalein import ScaleIn

    nodes = make_nodes(8, server=VALKEY_9.server)
    form(nodes, 4, 1, timeout=60)
    data = _write_mixed(nodes, 3000)
    writer = Writer(nodes)
    writer.start()
    time.sleep(0.3)

    messages: list[str] = []
    result = ScaleIn(
        Connector(), members_from_addresses(nodes.addresses), 3, 1, timeout=120, progress=messages.append
    ).run()
    written = writer.finish()

    assert result.moved_slots == 4096 and result.moved_keys > 0
    assert any("atomic slot migration" in m for m in messages), messages
    assert all(job["state"] == "success" for job in _export_jobs(nodes))
    _assert_no_open_slots_and_agreement(nodes)
    views = {v.address: v for v in views_of(nodes)}
    assert not any(views[str(a)].myself.slots for a in nodes.addresses[6:])
    assert _wrong(nodes, data) == []
    assert _wrong(nodes, written) == []


def test_a_mixed_cluster_moves_key_by_key(make_nodes):
    """Valkey 8.1 nodes with two new Valkey 9.1 ones (an engine upgrade under way): not every node has
    MIGRATESLOTS, so the move is MIGRATE; no atomic job is ever started."""
    nodes = make_nodes(6, server=VALKEY_8.server)
    form(nodes, 3, 1, timeout=60)
    data = _write_mixed(nodes, 3000)
    nodes.nodes += make_nodes(2, server=VALKEY_9.server).nodes
    writer = Writer(nodes)
    writer.start()
    time.sleep(0.3)

    messages: list[str] = []
    form(nodes, 4, 1, timeout=120, progress=messages.append)
    written = writer.finish()

    assert any("key by key" in m and "valkey 8.1.1" in m for m in messages), messages
    nines = [n for n in nodes.nodes if n.server == VALKEY_9.server]
    connector = Connector()
    for node in nines:
        assert jobs_of(connector, members_from_addresses([node.address])[0]) == []
    assert_complete(nodes, 4, 1)
    _assert_no_open_slots_and_agreement(nodes)
    assert _wrong(nodes, data) == []
    assert _wrong(nodes, written) == []
    views = dict(zip(members_from_addresses(nodes.addresses), views_of(nodes), strict=True))
    with pytest.raises(UsageError, match=r"valkey 8\.1\.1"):
        move_slots(connector, views, [SlotMove(0, *list(views)[:2])], strategy="atomic")


def test_with_the_chart_users_the_targets_grant_the_import_for_the_move_only(make_nodes):
    """With the chart's ACL users the source logs in to the target as `replication`, which may run only
    PSYNC/REPLCONF/PING: the move lets it run the import on the targets (CLUSTER SYNCSLOTS and the data's
    writes), the slots move atomically, and every node's `replication` user has its own rules again."""
    nodes = make_nodes(6, server=VALKEY_9.server, users=TEST_USERS)
    form(nodes, 3, 1, login=ADMIN, timeout=60)
    data = _write_mixed(nodes, 2000, ADMIN)
    nodes.nodes += make_nodes(2, server=VALKEY_9.server, users=TEST_USERS).nodes
    before = _replication_rules(nodes)

    messages: list[str] = []
    form(nodes, 4, 1, login=ADMIN, timeout=120, progress=messages.append)

    assert not [m for m in messages if "NOPERM" in m or "key by key" in m], messages
    jobs = _export_jobs(nodes, ADMIN)
    assert jobs and all(job["state"] == "success" for job in jobs), jobs
    assert_complete(nodes, 4, 1, ADMIN)
    _assert_no_open_slots_and_agreement(nodes, ADMIN)
    assert _wrong(nodes, data, ADMIN) == []
    assert _replication_rules(nodes) == before


def _replication_rules(nodes) -> list[tuple[str, object]]:
    """(commands, keys) of the `replication` user on every node."""
    rules = []
    for node in nodes.nodes:
        user = Connector(ADMIN).client(node.address).acl_getuser("replication")
        rules.append((user["commands"], user["keys"]))
    return rules


def test_key_by_key_on_valkey_9_when_asked(make_nodes):
    """strategy=keys (the benchmark's baseline) moves by MIGRATE even where atomic migration exists."""
    nodes = make_nodes(3, server=VALKEY_9.server, replicas_per_master=0)
    form(nodes, 3, 0, timeout=60)
    data = _write_mixed(nodes, 1000)
    connector = Connector()
    members = members_from_addresses(nodes.addresses)
    views = dict(zip(members, read_views(connector, nodes.addresses), strict=True))
    source, target = members[0], members[1]
    moves = [SlotMove(slot, source, target) for slot in range(0, 100)]

    keys = move_slots(connector, views, moves, strategy=KEYS)

    assert keys > 0
    assert _export_jobs(nodes) == []
    _assert_no_open_slots_and_agreement(nodes)
    assert _wrong(nodes, data) == []
