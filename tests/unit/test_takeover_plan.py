"""helm_redis.takeover.plan_takeover on views parsed from CLUSTER NODES text: who takes over a dead master's
shard, and when nothing is done (the master answers, a node still sees a handover's old master as a
replica, no majority of masters, no replica)."""

from helm_redis.clusterview import NodeView, parse_cluster_nodes
from helm_redis.nodes import NodeAddress
from helm_redis.takeover import node_id_at, plan_takeover

# Three shards: A (dead, replicas A1 and A2), B (replica B1), C (replica C1).
LINES = {
    "A": "aaaa 10.0.0.1:6379@16379 master - 0 0 1 connected 0-5460",
    "B": "bbbb 10.0.0.2:6379@16379 master - 0 0 2 connected 5461-10922",
    "C": "cccc 10.0.0.3:6379@16379 master - 0 0 3 connected 10923-16383",
    "A1": "a111 10.0.0.4:6379@16379 slave aaaa 0 0 1 connected",
    "A2": "a222 10.0.0.5:6379@16379 slave aaaa 0 0 1 connected",
    "B1": "b111 10.0.0.6:6379@16379 slave bbbb 0 0 2 connected",
}


def view(me: str, offset: int = 0, overrides: dict[str, str] | None = None) -> NodeView:
    lines = {**LINES, **(overrides or {})}
    text = "\n".join(
        line.replace(" master ", " myself,master ", 1).replace(" slave ", " myself,slave ", 1)
        if name == me
        else line
        for name, line in lines.items()
    )
    return NodeView(me, tuple(parse_cluster_nodes(text)), {}, {"slave_repl_offset": str(offset)}, 0)


def views(*names: str, offsets: dict[str, int] | None = None, lagging: str | None = None) -> dict:
    offsets = offsets or {}
    handed_over = {"A": "aaaa 10.0.0.1:6379@16379 slave a111 0 0 4 connected"}
    return {
        NodeAddress(name, 6379): view(name, offsets.get(name, 0), handed_over if name == lagging else None)
        for name in names
    }


def test_the_replica_with_the_highest_offset_takes_over():
    plan = plan_takeover(views("B", "C", "A1", "A2", "B1", offsets={"A1": 10, "A2": 99}), "aaaa", False)
    assert plan.replica == NodeAddress("A2", 6379), plan.reason


def test_nothing_while_the_master_answers():
    plan = plan_takeover(views("B", "C", "A1"), "aaaa", True)
    assert plan.replica is None and "still answers" in plan.reason


def test_nothing_when_any_node_already_sees_it_as_a_replica():
    plan = plan_takeover(views("B", "C", "A1", lagging="C"), "aaaa", False)
    assert plan.replica is None and "no master serving slots" in plan.reason


def test_nothing_without_a_majority_of_masters():
    plan = plan_takeover(views("B", "A1", "A2"), "aaaa", False)  # 1 of 3 masters answers besides the dead
    assert plan.replica is None and "no majority" in plan.reason


def test_nothing_for_a_replica_or_without_an_answering_replica():
    assert plan_takeover(views("B", "C", "A1"), "b111", False).replica is None
    plan = plan_takeover(views("B", "C", "B1"), "aaaa", False)
    assert plan.replica is None and "no replica" in plan.reason


def test_the_dead_node_is_found_by_its_announced_address():
    assert node_id_at(views("B", "C"), NodeAddress("10.0.0.1", 6379)) == "aaaa"
    assert node_id_at(views("B", "C"), NodeAddress("10.0.0.9", 6379)) is None
