"""The start step's rewrite of nodes.conf: stale peer IPs replaced from their hostnames."""

from helm_redis.nodesconf import prepare_nodes_conf, rewrite_addresses

CONF = (
    "aaaa 10.0.0.1:6379@16379,redis-0.h.ns.svc.cluster.local myself,master - 0 0 1 connected 0-5460\n"
    "bbbb 10.0.0.2:6379@16379,redis-1.h.ns.svc.cluster.local master - 0 0 2 connected 5461-16383\n"
    "cccc 10.0.0.3:6379@16379, slave bbbb 0 0 2 connected\n"
    "vars currentEpoch 2 lastVoteEpoch 0\n"
)
NEW = {"redis-0.h.ns.svc.cluster.local": "10.0.9.1", "redis-1.h.ns.svc.cluster.local": "10.0.9.2"}


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
    path.write_text(CONF)
    only_first = {"redis-0.h.ns.svc.cluster.local": "10.0.9.1"}

    rewrite = prepare_nodes_conf(
        path, timeout=0.3, resolve=only_first.get, progress=lambda _m: None, interval=0.1
    )

    assert rewrite is not None and rewrite.unresolved == ["redis-1.h.ns.svc.cluster.local"]
    assert "10.0.9.1:6379" in path.read_text() and "10.0.0.2:6379" in path.read_text()


def test_a_peer_that_resolves_late_is_waited_for(tmp_path):
    path = tmp_path / "nodes.conf"
    path.write_text(CONF)
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
