"""The reconciler: membership that heals itself, without a helm command.

A pod that starts with an empty volume (its disk was lost, or `persistence.type: none`) comes back with a
new node ID, alone, while every other node still lists its old ID as failed. The reconciler (a
Deployment of the chart) reads the cluster every few seconds; when members were replaced and nothing else
differs from the formed shape, it runs the same formation as the hook, which forgets the departed IDs and
makes each new node a replica of the shard that lost a member. Anything else (a scale-out or scale-in in
progress, a slot move, a shard that lost every copy) is left to the hook, which runs with the release's
new values; the reconciler only says why it waits.

Why a Deployment and not the pods' start step: the new node must be running to join (CLUSTER MEET and
REPLICATE are sent to a live node), Redis's own failover must have promoted a replica first when the
departed node was a master, and the placement (replicas off their master's Kubernetes node) is Python
that already lives in the tools image. One small process per release does it for every pod.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from . import membership
from .clusterstate import ClusterState
from .errors import HelmRedisError, explain
from .formation import Formation
from .nodes import Connector, try_read_views
from .plan import Member

Log = Callable[[str], None]


class Reconciler:
    def __init__(
        self,
        connector: Connector,
        members: list[Member],
        masters: int,
        replicas_per_master: int,
        log: Log,
        timeout: float = 120.0,
        placement: Callable[[], list[Member]] | None = None,
    ) -> None:
        self.connector = connector
        self.members = members
        # Where the pods run now (they move between Kubernetes nodes over time), asked before healing.
        self.placement = placement
        self.masters = masters
        self.replicas_per_master = replicas_per_master
        self.log = log
        self.timeout = timeout

    def step(self) -> str:
        """One look at the cluster, and the healing it needs; returns what it did or why it waits."""
        results = try_read_views(self.connector, [m.address for m in self.members])
        down = [m.name for m, r in zip(self.members, results, strict=True) if isinstance(r, Exception)]
        if down:
            return f"waiting: {', '.join(down)} do(es) not answer"
        state = ClusterState(dict(zip(self.members, results, strict=True)))  # type: ignore[arg-type]
        why = self.why_not_heal(state)
        if why:
            return why
        members = self.placement() if self.placement else self.members
        result = Formation(
            self.connector, members, self.masters, self.replicas_per_master, self.timeout, self.log
        ).run()
        return "healed: " + "; ".join(result.actions or ["nothing left to do"])

    def why_not_heal(self, state: ClusterState) -> str | None:
        """None when the only differences from the formed shape are departed nodes and the members that
        replace them; else why the reconciler leaves the cluster alone."""
        departed = state.departed()
        if not departed:
            return "ok"
        if state.open_slot_moves():
            return "waiting: slots are being moved (a hook is at work)"
        lost = membership.lost_shards(state)
        if lost:
            return (
                "refusing: "
                + membership.lost_shards_text(state, lost)
                + ": lost every copy; `helm upgrade --set cluster.recoverLostSlots=true` gives those slots "
                "to an empty node, accepting the loss"
            )
        if set(membership.awaiting_failover(state)) - set(membership.stranded_masters(state)):
            names = ", ".join(membership.node_label(n) for n in membership.awaiting_failover(state).values())
            return f"waiting: Redis has not promoted a replica of {names} yet"
        # A gone master that still owns slots is a shard that is about to be served by its replica.
        owners = len(state.owners()) + len(membership.awaiting_failover(state))
        if owners != self.masters:
            return f"waiting: {owners} masters serve slots, {self.masters} wanted (the hook reshapes)"
        # Members without a role (neither slots nor a master) may only be replacements: as many as
        # departed nodes. More of them means new pods (a scale-out), which the hook places.
        free = [m.name for m, v in state.views.items() if not v.myself.slots and not v.myself.is_replica]
        if len(free) > len(membership.gone(state)):
            return f"waiting: {', '.join(free)} replace no departed node (the hook places new pods)"
        return None

    def run(self, interval: float, passes: int | None = None) -> None:
        """Step every `interval` seconds (forever, or `passes` times), logging each change of outcome."""
        last = ""
        done = 0
        while passes is None or done < passes:
            started = time.monotonic()
            try:
                outcome = self.step()
            except HelmRedisError as error:
                outcome = f"error: {error}"
            except Exception as error:
                # A controller keeps running (the next pass retries); a bug still shows its traceback.
                explained = explain(error)
                if explained is None:
                    raise
                outcome = f"error: {explained}"
            if outcome != last or outcome.startswith("healed"):
                self.log(outcome)
                last = outcome
            done += 1
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
