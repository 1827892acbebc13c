"""Promotion at once when the master's process is known to be gone (helm_redis.takeover, issue 16), on real
local nodes under the drill's write load (SET + WAIT 1 per shard): the replica with the highest offset is
promoted by CLUSTER FAILOVER FORCE in well under Redis's own detection (node timeout 5 s + election), no
WAIT-acknowledged write is lost, and nothing is done while the master answers or without a majority."""

from __future__ import annotations

import time

from helm_redis.drill import LoadRun
from helm_redis.formation import members_from_addresses
from helm_redis.nodes import Connector
from helm_redis.takeover import take_over

from .helpers import master_and_replica, views_of, wait_for


def _master_id(cluster, master) -> str:
    return next(v.node_id for v in views_of(cluster) if v.address == str(master.address))


def test_a_killed_master_is_replaced_in_about_a_second_losing_no_acknowledged_write(cluster):
    master, replica = master_and_replica(cluster)
    master_id = _master_id(cluster, master)
    load = LoadRun(
        Connector(), members_from_addresses(cluster.addresses), 1, max_writes=200_000, max_seconds=60
    )
    load.start()
    try:
        time.sleep(0.5)
        killed = time.monotonic()
        master.stop(kill=True)
        result = take_over(Connector(timeout=1), cluster.addresses, master.address, master_id)
        promoted_after = time.monotonic() - killed
        time.sleep(0.5)
    finally:
        outcome = load.stop()
    gap = outcome.longest_gaps
    print(f"\ntakeover: {result.reason}; promoted {promoted_after:.2f} s after the kill; write gaps {gap}")
    assert result.promoted == replica.address, result
    assert promoted_after < 2.0, "the issue's bound: about 1-2 s instead of 8-10 s"
    assert outcome.lost_acknowledged == 0 and outcome.acknowledged > 0
    master.start()  # it comes back as a replica of the new master, with its node ID
    master.wait_ready()
    wait_for(
        lambda: master.client().execute_command("ROLE")[0] == "slave", timeout=30, what="rejoin as replica"
    )
    assert _master_id(cluster, master) == master_id


def test_nothing_is_done_while_the_master_answers(cluster):
    master, replica = master_and_replica(cluster)
    result = take_over(Connector(timeout=1), cluster.addresses, master.address, _master_id(cluster, master))
    assert result.promoted is None and "still answers" in result.reason
    assert replica.client().execute_command("ROLE")[0] == "slave"


def test_nothing_is_done_without_a_majority_of_masters(cluster):
    views = {v.address: v for v in views_of(cluster)}
    masters = [n for n in cluster.nodes if views[str(n.address)].myself.slots]
    ids = {str(m.address): views[str(m.address)].node_id for m in masters}
    masters[0].stop(kill=True)
    masters[1].stop(kill=True)  # 1 of 3 masters left: no majority can vote
    result = take_over(
        Connector(timeout=1), cluster.addresses, masters[0].address, ids[str(masters[0].address)]
    )
    assert result.promoted is None and "no majority" in result.reason, result
