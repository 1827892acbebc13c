"""Parsing what Redis says: CLUSTER NODES lines (and nodes.conf), INFO text."""

from helm_redis.clusterview import compress_slots, parse_cluster_nodes, parse_info, parse_node_line

MASTER = (
    "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca "
    "10.244.0.5:6379@16379,redis-0.redis-headless.ns.svc.cluster.local "
    "myself,master - 0 1426238316232 1 connected 0-5460 5462 "
    "[5461->-292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f]"
)
REPLICA = (
    "292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 10.244.0.6:6379@16379, slave "
    "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 1 connected"
)


def test_a_master_line_gives_its_slots_hostname_and_open_slots():
    node = parse_node_line(MASTER)
    assert (node.ip, node.port, node.bus_port) == ("10.244.0.5", 6379, 16379)
    assert node.hostname == "redis-0.redis-headless.ns.svc.cluster.local"
    assert node.is_myself and node.is_master and not node.is_replica
    assert node.slots == ((0, 5460), (5462, 5462))
    assert node.slot_count == 5462
    assert node.migrating == {5461: "292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f"}


def test_a_replica_line_names_its_master_and_an_empty_hostname():
    node = parse_node_line(REPLICA)
    assert node.is_replica and node.master_id == "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca"
    assert node.hostname == ""
    assert node.slots == ()


def test_importing_slots_are_parsed():
    node = parse_node_line("a" * 40 + " 1.2.3.4:1@2 master - 0 0 3 connected [77-<-" + "b" * 40 + "]")
    assert node.importing == {77: "b" * 40}


def test_nodes_conf_vars_line_is_skipped_and_aux_fields_do_not_become_hostnames():
    text = (
        "a" * 40 + " 1.2.3.4:6379@16379,,shard-id=abc myself,master - 0 0 1 connected 0-100\n"
        "vars currentEpoch 6 lastVoteEpoch 0\n"
    )
    (node,) = parse_cluster_nodes(text)
    assert node.hostname == ""


def test_info_text_becomes_a_dict():
    assert parse_info("# Cluster\r\ncluster_state:ok\r\ncluster_size:3\r\n") == {
        "cluster_state": "ok",
        "cluster_size": "3",
    }


def test_compress_slots_makes_ranges():
    assert compress_slots([5, 1, 2, 3, 9]) == [(1, 3), (5, 5), (9, 9)]
