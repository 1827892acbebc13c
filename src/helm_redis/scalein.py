"""Scale-in: before the StatefulSet shrinks, empty the pods that will go (the highest ordinals).

Run as the chart's pre-upgrade hook (Argo CD: PreSync) with the new shape, against every pod that runs
now. Phases, each read fresh from the nodes so a run killed anywhere is finished by the next one:
refuse what cannot work (fewer than 3 masters; data that does not fit the remaining masters) -> finish
slot moves a killed run left open -> promote an in-sync replica among the remaining pods where a leaving
master has one (CLUSTER FAILOVER, no data moves) -> move every slot with its keys off the leaving masters
and off surplus remaining masters -> pair the remaining replicas so each remaining master has its
replicas, in sync. The post-upgrade hook forgets the removed nodes once their pods are gone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .clusterstate import ClusterState
from .clusterview import TOTAL_SLOTS, format_ranges
from .errors import PlanError
from .health import Check
from .nodes import Connector, parallel
from .operation import ClusterOperation, Progress
from .plan import Member, assign_roles
from .slots import move_slots, plan_drain

MIN_MASTERS = 3
# A remaining master may be filled up to this share of its memory limit: the rest is for replication
# buffers, client buffers and the copy-on-write of an AOF rewrite.
MEMORY_HEADROOM = 0.9


@dataclass
class ScaleInResult:
    leaving: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    moved_slots: int = 0
    moved_keys: int = 0
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "leaving": self.leaving,
            "actions": self.actions,
            "moved_slots": self.moved_slots,
            "moved_keys": self.moved_keys,
            "seconds": round(self.seconds, 3),
        }


class ScaleIn(ClusterOperation):
    def __init__(
        self,
        connector: Connector,
        members: list[Member],
        masters: int,
        replicas_per_master: int,
        timeout: float = 300.0,
        progress: Progress = lambda _msg: None,
        memory_limit: int | None = None,
    ) -> None:
        super().__init__(connector, members, masters, replicas_per_master, timeout, progress)
        keep = masters * (1 + replicas_per_master)
        self.staying = self.members[:keep]
        self.leaving = self.members[keep:]
        self.memory_limit = memory_limit
        self.result = ScaleInResult(leaving=[m.name for m in self.leaving])

    def run(self) -> ScaleInResult:
        started = time.monotonic()
        if not self.leaving:
            self.progress("no pod leaves: nothing to drain")
            return self.result
        if self.masters < MIN_MASTERS:
            raise PlanError(
                f"cluster.masters={self.masters} would leave fewer than {MIN_MASTERS} masters (a failover "
                f"needs a majority of at least {MIN_MASTERS}): keep cluster.masters >= {MIN_MASTERS}"
            )
        self.progress(f"scale-in: {', '.join(m.name for m in self.leaving)} will be removed")
        state = self._read()
        self._refuse_if_data_does_not_fit(state)
        state = self._finish_open_moves(state)
        state = self._promote_staying_replicas(state)
        keep = self._keep_masters(state)
        state = self._drain(state, keep)
        state = self._pair_replicas(state, keep)
        self.result.seconds = time.monotonic() - started
        self.progress(f"scale-in prepared in {self.result.seconds:.2f} s: the leaving pods hold no slot")
        return self.result

    # -- refusals ---------------------------------------------------------------------------------

    def _refuse_if_data_does_not_fit(self, state: ClusterState) -> None:
        owners = state.owners()
        memory = dict(zip(owners, parallel(self._memory, owners), strict=True))
        dataset = sum(m["used_memory_dataset"] for m in memory.values())
        overhead = max((m["used_memory"] - m["used_memory_dataset"] for m in memory.values()), default=0)
        limits = [m["maxmemory"] for m in memory.values() if m["maxmemory"]]
        limit, source = (
            (min(limits), "redis.maxmemory") if limits else (self.memory_limit, "the memory limit")
        )
        if not limit:
            return
        projected = dataset / self.masters + overhead
        if projected > MEMORY_HEADROOM * limit:
            raise PlanError(
                f"cluster.masters={self.masters} would leave about {projected / 2**20:.0f} MiB on each "
                f"remaining master, more than {MEMORY_HEADROOM:.0%} of {source} ({limit / 2**20:.0f} MiB): "
                "keep more masters, or raise redis.maxmemory and redis.resources.limits.memory first"
            )

    def _memory(self, member: Member) -> dict[str, int]:
        info = self.connector.client(member.address).info("memory")
        return {key: int(info.get(key, 0)) for key in ("used_memory", "used_memory_dataset", "maxmemory")}

    # -- roles and slots --------------------------------------------------------------------------

    def _finish_open_moves(self, state: ClusterState) -> ClusterState:
        moves = state.open_slot_moves()
        if not moves:
            return state
        keys = move_slots(self.connector, state.views, moves, self.progress)
        self._act(f"finished {len(moves)} slot move(s) a previous run left open ({keys} keys)")
        return self._read()

    def _promote_staying_replicas(self, state: ClusterState) -> ClusterState:
        """Where a leaving master has an in-sync replica among the remaining pods, a handover keeps its
        slots where they are, instead of moving every key (until the remaining pods hold the masters)."""
        staying = set(self.staying)
        replicas = state.replicas()
        leaving_owners = sorted(
            (m for m in state.owners() if m not in staying),
            key=lambda m: (-state.views[m].myself.slot_count, m.ordinal),
        )
        for master in leaving_owners:
            if len([m for m in state.owners() if m in staying]) >= self.masters:
                break
            candidates = [
                r
                for r in replicas.get(master, [])
                if r in staying and state.views[r].replication.get("master_link_status") == "up"
            ]
            if not candidates:
                continue
            best = max(candidates, key=lambda r: int(state.views[r].replication.get("slave_repl_offset", 0)))
            self.connector.client(best.address).execute_command("CLUSTER", "FAILOVER")
            self._act(f"{best.name} takes over from {master.name} (CLUSTER FAILOVER)")
            state = self._wait(
                f"{best.name} to take over from {master.name}",
                lambda s, best=best: (
                    [] if s.views[best].myself.slots else [f"{best.name} serves no slot yet"]
                ),
            )
        return state

    def _keep_masters(self, state: ClusterState) -> list[Member]:
        staying_owners = [m for m in state.owners() if m in set(self.staying)]
        if len(staying_owners) >= self.masters:
            # The biggest shards stay masters: fewer keys to move.
            ranked = sorted(staying_owners, key=lambda m: (-state.views[m].myself.slot_count, m.ordinal))
            return sorted(ranked[: self.masters], key=lambda m: m.ordinal)
        empty = [
            m
            for m in self.staying
            if state.views[m].myself.is_master and not state.views[m].myself.slots and not state.views[m].keys
        ]
        if len(staying_owners) + len(empty) < self.masters:
            raise PlanError(
                f"cluster.masters={self.masters} needs {self.masters} masters among the remaining pods "
                f"({self.staying[0].name}..{self.staying[-1].name}), but only {len(staying_owners)} of them "
                "serve slots and no in-sync replica of a leaving master is among them: wait until the "
                "replicas are in sync (helm redis verify), then upgrade again"
            )
        return sorted(staying_owners + empty[: self.masters - len(staying_owners)], key=lambda m: m.ordinal)

    def _drain(self, state: ClusterState, keep: list[Member]) -> ClusterState:
        sources = [m for m in state.owners() if m not in keep]
        if not sources:
            return state
        owned = {m: state.views[m].myself.slots for m in state.owners()}
        owned.update({m: () for m in keep if m not in owned})
        moves = plan_drain(owned, sources, keep)
        state = self._wait("every node to see cluster_state:ok before moving slots", self._state_complaints)
        keys = move_slots(self.connector, state.views, moves, self.progress)
        self.result.moved_slots += len(moves)
        self.result.moved_keys += keys
        self._act(
            f"moved {len(moves)} slot(s) with {keys} key(s) from {', '.join(m.name for m in sources)} to "
            f"{', '.join(m.name for m in keep)}"
        )
        return self._wait("the moved slots to be agreed by every node", self._drained_complaints(keep))

    def _drained_complaints(self, keep: list[Member]):
        def complaints(state: ClusterState) -> list[str]:
            found = self._membership_complaints(state)
            found += [
                f"{m.name} still serves slots {format_ranges(state.views[m].myself.slots)}"
                for m in state.owners()
                if m not in keep
            ]
            found += [
                f"{m.name}: slot {s} {what}"
                for m, v in state.views.items()
                for s, what in v.open_slots().items()
            ]
            served = sum(state.views[m].myself.slot_count for m in keep)
            if served != TOTAL_SLOTS:
                found.append(f"the remaining masters serve {served} of {TOTAL_SLOTS} slots")
            return found

        return complaints

    def _pair_replicas(self, state: ClusterState, keep: list[Member]) -> ClusterState:
        """Every remaining master gets its replicas from the remaining pods (existing pairs stay)."""
        staying = set(self.staying)
        existing = {
            master: [r for r in state.replicas().get(master, []) if r in staying][: self.replicas_per_master]
            for master in keep
        }
        paired = {r for rs in existing.values() for r in rs}
        free = [m for m in self.staying if m not in keep and m not in paired]
        assignment = assign_roles(keep, existing, free, self.masters, self.replicas_per_master)
        todo = [
            (replica, master)
            for replica, master in assignment.replicas
            if state.views[replica].myself.master_id != state.views[master].node_id
        ]
        if todo:

            def replicate(pair: tuple[Member, Member]) -> None:
                replica, master = pair
                node_id = state.views[master].node_id
                self.connector.client(replica.address).execute_command("CLUSTER", "REPLICATE", node_id)

            parallel(replicate, todo)
            for replica, master in todo:
                self._act(f"{replica.name} replicates {master.name}")
        return self._wait(
            "every remaining master to have its replicas in sync", self._paired_complaints(keep)
        )

    def _paired_complaints(self, keep: list[Member]):
        def complaints(state: ClusterState) -> list[str]:
            found = self._drained_complaints(keep)(state)
            replicas = state.replicas()
            for master in keep:
                in_sync = [
                    r
                    for r in replicas.get(master, [])
                    if r in set(self.staying) and state.views[r].replication.get("master_link_status") == "up"
                ]
                if len(in_sync) < self.replicas_per_master:
                    found.append(
                        f"{master.name} has {len(in_sync)} in-sync replica(s) among the remaining pods, "
                        f"{self.replicas_per_master} wanted"
                    )
            return found

        return complaints
