"""Assertions and small tools shared by the Redis-level tests."""

from __future__ import annotations

import time

import redis
from redis.cluster import ClusterNode, RedisCluster

from helm_redis.clusterview import TOTAL_SLOTS, NodeView, covered_slots
from helm_redis.credentials import AppUser, Credentials, UserSet
from helm_redis.formation import Formation, FormationResult, members_from_addresses
from helm_redis.health import DONE_CHECKS, Expectation, assess, failed
from helm_redis.localnodes import LocalNodes
from helm_redis.nodes import Connector, read_views

# The chart's users with test passwords: nodes started with them have `default` off, as in the pods.
TEST_USERS = UserSet(
    admin=("admin-pw",),
    replication=("replication-pw",),
    apps=((AppUser("app", "~* &* +@all -@dangerous"), ("app-pw",)),),
)
ADMIN = TEST_USERS.admin_credentials


def form(
    nodes: LocalNodes, masters: int, replicas: int, login: Credentials | None = None, **kw
) -> FormationResult:
    connector = Connector(login, tls=nodes.nodes[0].tls)
    try:
        return Formation(connector, members_from_addresses(nodes.addresses), masters, replicas, **kw).run()
    finally:
        connector.close()


def views_of(nodes: LocalNodes, login: Credentials | None = None) -> list[NodeView]:
    return read_views(Connector(login, tls=nodes.nodes[0].tls), nodes.addresses)


def assert_complete(
    nodes: LocalNodes, masters: int, replicas_per_master: int, login: Credentials | None = None
) -> None:
    """The done criteria, from every node's own view."""
    views = views_of(nodes, login)
    for view in views:
        assert view.cluster_info["cluster_state"] == "ok", view.address
        assert len(view.nodes) == len(nodes.nodes), view.address
        assert covered_slots(view.slot_map()) == TOTAL_SLOTS, view.address
        assert not view.open_slots(), view.address
    assert len({v.signature() for v in views}) == 1, "nodes disagree on the slot map"
    owners = [v for v in views if v.myself.slots]
    assert len(owners) == masters
    replica_views = [v for v in views if v.myself.is_replica]
    assert len(replica_views) == masters * replicas_per_master
    for view in replica_views:
        assert view.replication["master_link_status"] == "up", view.address
    problems = failed(assess(views, Expectation(masters, replicas_per_master)), DONE_CHECKS)
    assert not problems, problems


def fingerprint(nodes: LocalNodes) -> dict[str, tuple]:
    """What a no-op run must not change: node ids, config epochs, slots, roles, key counts."""
    result = {}
    for view in views_of(nodes):
        me = view.myself
        result[view.address] = (me.node_id, me.config_epoch, me.slots, me.master_id, view.keys)
    return result


def cluster_client(nodes: LocalNodes, login: Credentials | None = None) -> RedisCluster:
    return RedisCluster(
        startup_nodes=[ClusterNode(a.host, a.port) for a in nodes.addresses],
        username=login.username if login else None,
        password=login.passwords[0] if login else None,
        decode_responses=True,
        socket_timeout=5,
    )


def write_keys(nodes: LocalNodes, count: int, prefix: str = "key") -> dict[str, str]:
    """Keys spread over every slot range; returns what was written."""
    client = cluster_client(nodes)
    data = {f"{prefix}:{i}": f"value-{i}" for i in range(count)}
    for key, value in data.items():
        client.set(key, value)
    client.close()
    return data


def read_back(nodes: LocalNodes, data: dict[str, str]) -> dict[str, str | None]:
    """Keys whose value is not what was written (key -> what was found)."""
    client = cluster_client(nodes)
    wrong = {}
    for key, value in data.items():
        found = client.get(key)
        if found != value:
            wrong[key] = found
    client.close()
    return wrong


def wait_for(condition, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = condition()
            if result:
                return result
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def master_and_replica(nodes: LocalNodes, login: Credentials | None = None):
    """The first master serving slots and one of its replicas (as LocalNode objects)."""
    views = {v.address: v for v in views_of(nodes, login)}
    master = next(n for n in nodes.nodes if views[str(n.address)].myself.slots)
    master_id = views[str(master.address)].node_id
    replica = next(n for n in nodes.nodes if views[str(n.address)].myself.master_id == master_id)
    return master, replica
