"""Form the cluster, or finish or grow it: read every node first, act only on what is missing.

Phases (redis-cli's create, plus what it lacks): preflight -> plan -> assign slots -> config epochs ->
MEET -> wait for agreement -> REPLICATE -> move slots to new masters -> wait until done. Every phase
is idempotent, so a run killed anywhere is finished by the next one, and a formed cluster is left
untouched. Nothing here ever resets or flushes a node.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .clusterview import TOTAL_SLOTS, NodeView, compress_slots, format_ranges
from .errors import ClusterNotComplete, NodesNotReady, PlanError, UnexpectedData
from .health import DONE_CHECKS, Check, Expectation, assess, failed
from .nodes import Connector, NodeAddress, parallel, resolve_host, try_read_views, wait_until_reachable
from .plan import Assignment, Member, assign_roles, colocated, slot_ranges
from .slots import SlotMove, move_slots, plan_rebalance

Progress = Callable[[str], None]


@dataclass
class FormationResult:
    already_formed: bool
    actions: list[str] = field(default_factory=list)
    plan: list[dict[str, str]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "already_formed": self.already_formed,
            "actions": self.actions,
            "plan": self.plan,
            "warnings": self.warnings,
            "checks": [c.as_dict() for c in self.checks],
            "seconds": round(self.seconds, 3),
        }


@dataclass
class _State:
    """The cluster as the nodes describe it, keyed by member."""

    views: dict[Member, NodeView]

    def member_by_id(self) -> dict[str, Member]:
        return {view.node_id: member for member, view in self.views.items()}

    def owners(self) -> list[Member]:
        return sorted((m for m, v in self.views.items() if v.myself.slots), key=lambda m: m.ordinal)

    def replicas(self) -> dict[Member, list[Member]]:
        by_id = self.member_by_id()
        result: dict[Member, list[Member]] = {}
        for member, view in self.views.items():
            master = by_id.get(view.myself.master_id or "")
            if view.myself.is_replica and master is not None:
                result.setdefault(master, []).append(member)
        return result

    def total_keys(self) -> int:
        return sum(v.keys for v in self.views.values())

    def uncovered(self) -> list[int]:
        served: set[int] = set()
        for view in self.views.values():
            for start, end in view.myself.slots:
                served.update(range(start, end + 1))
        return [slot for slot in range(TOTAL_SLOTS) if slot not in served]


class Formation:
    def __init__(
        self,
        connector: Connector,
        members: list[Member],
        masters: int,
        replicas_per_master: int,
        timeout: float = 120.0,
        progress: Progress = lambda _msg: None,
    ) -> None:
        if masters < 1:
            raise PlanError(f"masters must be at least 1, got {masters}")
        if len(members) < masters * (1 + replicas_per_master):
            raise PlanError(
                f"{masters} masters with {replicas_per_master} replica(s) each need "
                f"{masters * (1 + replicas_per_master)} nodes, only {len(members)} given"
            )
        self.connector = connector
        self.members = sorted(members, key=lambda m: m.ordinal)
        self.masters = masters
        self.replicas_per_master = replicas_per_master
        self.timeout = timeout
        self.progress = progress
        self.deadline = 0.0
        self.result = FormationResult(already_formed=False)

    # -- reading ---------------------------------------------------------------------------------

    def _read(self) -> _State:
        """Every member's view. Members that do not answer are waited for, bounded by the run's deadline:
        `helm upgrade` without --wait (and an Argo CD sync) runs this hook while the StatefulSet still
        rolls, so pods restart and reload their data under it."""
        reported = ""
        while True:
            results = try_read_views(self.connector, [m.address for m in self.members])
            down = {m: r for m, r in zip(self.members, results, strict=True) if isinstance(r, Exception)}
            if not down:
                return _State(dict(zip(self.members, results, strict=True)))  # type: ignore[arg-type]
            names = ", ".join(m.name for m in down)
            if time.monotonic() > self.deadline:
                first = next(iter(down.values()))
                raise NodesNotReady(f"{len(down)} node(s) still do not answer ({names}): {first}")
            if names != reported:
                self.progress(f"waiting for {len(down)} node(s) restarting or loading: {names}")
                reported = names
            time.sleep(0.5)

    def _checks(self, state: _State) -> list[Check]:
        return assess(
            list(state.views.values()),
            Expectation(self.masters, self.replicas_per_master),
            names={str(m.address): m.name for m in self.members},
        )

    def _wait(self, what: str, condition: Callable[[_State], list[str]]) -> _State:
        """Poll every node until `condition` returns no complaints, or fail at the deadline."""
        reported = ""
        while True:
            state = self._read()
            complaints = condition(state)
            if not complaints:
                return state
            if time.monotonic() > self.deadline:
                raise ClusterNotComplete(f"timed out waiting for {what}: {'; '.join(complaints[:3])}")
            summary = complaints[0]
            if summary != reported:
                self.progress(f"waiting for {what}: {summary}")
                reported = summary
            time.sleep(0.05)

    def _act(self, description: str) -> None:
        self.result.actions.append(description)
        self.progress(description)

    # -- the run ---------------------------------------------------------------------------------

    def run(self, dry_run: bool = False) -> FormationResult:
        started = time.monotonic()
        self.deadline = started + self.timeout
        wait_until_reachable(
            self.connector,
            [m.address for m in self.members],
            self.timeout,
            self.progress,
            {m.address: m.name for m in self.members},
        )
        state = self._read()
        checks = self._checks(state)
        if not failed(checks, DONE_CHECKS):
            self.result.already_formed = True
            self.result.checks = checks
            self.result.seconds = time.monotonic() - started
            self.progress("already formed: nothing to do")
            return self.result
        if self._settling(state):
            # A rollout or a restart is under way: nothing to form, only to wait for (acting on a cluster
            # whose nodes come and go could only race Redis's own failovers).
            self.progress("formed, not settled yet (pods restarting or replicas syncing): waiting")
            state = self._wait("the cluster to be complete", self._done_complaints)
            self.result.already_formed = True
            self.result.checks = self._checks(state)
            self.result.seconds = time.monotonic() - started
            return self.result

        self._refuse_unexpected_data(state)
        assignment, slot_plan = self._plan(state)
        self._record_plan(state, assignment, slot_plan)
        if dry_run:
            self.result.seconds = time.monotonic() - started
            return self.result

        self._assign_slots(state, slot_plan)
        self._set_config_epochs(state)
        state = self._meet(state)
        state = self._replicate(state, assignment)
        self._rebalance(state)
        state = self._wait("the cluster to be complete", self._done_complaints)
        self.result.checks = self._checks(state)
        self.result.seconds = time.monotonic() - started
        self.progress(f"formed in {self.result.seconds:.2f} s")
        return self.result

    def _settling(self, state: _State) -> bool:
        """Formed in shape (every slot served by the wanted number of masters, every other member a
        replica of one, every member known to all, no slot moving), only not done yet."""
        owners = state.owners()
        replicas = {r for rs in state.replicas().values() for r in rs}
        ids = set(state.member_by_id())
        return (
            len(owners) == self.masters
            and not state.uncovered()
            and set(owners) | replicas == set(self.members)
            and all(ids <= set(v.by_id()) for v in state.views.values())
            and not self._open_slot_moves(state)
        )

    # -- safety ----------------------------------------------------------------------------------

    def _refuse_unexpected_data(self, state: _State) -> None:
        """Refuse, naming the node, wherever acting could overwrite or orphan keys."""
        ids = set(state.member_by_id())
        replicas = {r for rs in state.replicas().values() for r in rs}
        in_cluster = {m for m, v in state.views.items() if len(set(v.by_id()) & ids) > 1}
        for member, view in state.views.items():
            where = f"{member.name} ({member.address})"
            if view.keys and not view.myself.slots and member not in replicas:
                raise UnexpectedData(
                    f"{where} holds {view.keys} keys but serves no slots and replicates no master of this "
                    "cluster; the hook never overwrites data: move or delete those keys, then run again"
                )
            if view.keys and member not in in_cluster and (in_cluster or len(self.members) > 1):
                raise UnexpectedData(
                    f"{where} holds {view.keys} keys but is not part of the cluster (it knows only itself); "
                    "joining it would discard them: move or delete those keys, then run again"
                )
            foreign = [n for n in view.nodes if n.node_id not in ids and n.slots]
            if foreign:
                raise UnexpectedData(
                    f"{where} belongs to another cluster: it knows {foreign[0].address} "
                    f"({foreign[0].node_id[:8]}) which serves slots {format_ranges(foreign[0].slots)}; "
                    "give the chart empty nodes or that cluster's nodes"
                )
        uncovered = state.uncovered()
        if state.owners() and uncovered and state.total_keys():
            holders = ", ".join(m.name for m, v in state.views.items() if v.keys)
            raise UnexpectedData(
                f"slots {format_ranges(compress_slots(uncovered)[:3])} are served by no node while "
                f"{holders} hold keys (a master lost with no replica?); the hook never re-slots a cluster "
                "that holds data: check it with `redis-cli --cluster check`"
            )

    # -- planning --------------------------------------------------------------------------------

    def _plan(self, state: _State) -> tuple[Assignment, dict[Member, list[int]]]:
        owners = state.owners()
        replicas = state.replicas()
        placed = set(owners) | {r for rs in replicas.values() for r in rs}
        free = [m for m in self.members if m not in placed]
        try:
            assignment = assign_roles(owners, replicas, free, self.masters, self.replicas_per_master)
        except ValueError as error:
            raise PlanError(str(error)) from None
        masters = sorted(owners + assignment.masters, key=lambda m: m.ordinal)
        slot_plan: dict[Member, list[int]] = {}
        uncovered = state.uncovered()
        if uncovered:
            # Fresh or interrupted formation (no keys anywhere): the standard split over the masters
            # in pod order; slots already served keep their owner.
            ranges = slot_ranges(len(masters))
            for master, (start, end) in zip(masters, ranges, strict=True):
                wanted = [s for s in uncovered if start <= s <= end]
                if wanted:
                    slot_plan[master] = wanted
        return assignment, slot_plan

    def _record_plan(self, state: _State, assignment: Assignment, slot_plan: dict[Member, list[int]]) -> None:
        masters = sorted(set(state.owners()) | set(assignment.masters), key=lambda m: m.ordinal)
        replicas_of: dict[Member, list[Member]] = {m: list(state.replicas().get(m, [])) for m in masters}
        for replica, master in assignment.replicas:
            replicas_of.setdefault(master, []).append(replica)
        for master in masters:
            current = list(state.views[master].myself.slots)
            added = compress_slots(slot_plan.get(master, []))
            self.result.plan.append(
                {
                    "master": master.name,
                    "k8s_node": master.k8s_node or "",
                    "slots": format_ranges(sorted(current + added)),
                    "replicas": ", ".join(r.name for r in replicas_of.get(master, [])),
                }
            )
        for replica, master in colocated(assignment.replicas):
            self.result.warnings.append(
                f"{replica.name} shares Kubernetes node {replica.k8s_node} with its master {master.name}: "
                "the node count leaves no other choice"
            )
        for row in self.result.plan:
            self.progress(f"plan: {row['master']} slots {row['slots']} replicas [{row['replicas']}]")

    # -- applying --------------------------------------------------------------------------------

    def _assign_slots(self, state: _State, slot_plan: dict[Member, list[int]]) -> None:
        def add(item: tuple[Member, list[int]]) -> None:
            member, slots = item
            args: list[int] = []
            for start, end in compress_slots(slots):
                args += [start, end]
            self.connector.client(member.address).execute_command("CLUSTER", "ADDSLOTSRANGE", *args)

        if slot_plan:
            parallel(add, slot_plan.items())
            for member, slots in slot_plan.items():
                self._act(f"assigned slots {format_ranges(compress_slots(slots))} to {member.name}")

    def _set_config_epochs(self, state: _State) -> None:
        """A distinct epoch per lonely node before MEET, so slot owners never collide (as redis-cli)."""
        lonely = [m for m, v in state.views.items() if v.knows_only_itself and v.myself.config_epoch == 0]
        if not lonely:
            return
        used = max((n.config_epoch for v in state.views.values() for n in v.nodes), default=0)

        def set_epoch(item: tuple[int, Member]) -> None:
            epoch, member = item
            self.connector.client(member.address).execute_command("CLUSTER", "SET-CONFIG-EPOCH", epoch)

        parallel(set_epoch, list(enumerate(lonely, start=used + 1)))

    def _meet_address(self, member: Member, view: NodeView) -> tuple[str, int, int]:
        me = view.myself
        ip = me.ip or resolve_host(member.address.host)
        port = me.port or member.address.port
        return ip, port, me.bus_port or port + 10000

    def _meet(self, state: _State) -> _State:
        """Every node meets every node it does not know yet (in parallel), instead of a star + gossip."""
        ids = {view.node_id for view in state.views.values()}
        todo = {
            member: [other for other in self.members if state.views[other].node_id not in view.by_id()]
            for member, view in state.views.items()
            if not ids <= set(view.by_id())
        }
        if todo:
            self._introduce(state, todo)
            met = sorted({o for others in todo.values() for o in others}, key=lambda m: m.ordinal)
            self._act(f"introduced {', '.join(m.name for m in met)} to the cluster")
        return self._wait("every node to know every other", self._membership_complaints)

    def _introduce(self, state: _State, todo: dict[Member, list[Member]]) -> None:
        """CLUSTER MEET from each member to the listed ones, one pipeline per member."""

        def meet(item: tuple[Member, list[Member]]) -> None:
            member, others = item
            pipe = self.connector.client(member.address).pipeline(transaction=False)
            for other in others:
                pipe.execute_command("CLUSTER", "MEET", *self._meet_address(other, state.views[other]))
            pipe.execute()

        parallel(meet, todo.items())

    def _membership_complaints(self, state: _State) -> list[str]:
        ids = {v.node_id: m for m, v in state.views.items()}
        complaints = []
        for member, view in state.views.items():
            known = view.by_id()
            missing = [ids[i].name for i in ids if i not in known or not known[i].is_settled]
            if missing:
                complaints.append(f"{member.name} does not know {', '.join(missing)} yet")
        if not complaints and len({v.signature() for v in state.views.values()}) > 1:
            complaints.append("nodes do not agree on the slot map yet")
        return complaints

    def _replicate(self, state: _State, assignment: Assignment) -> _State:
        todo = [
            (replica, master)
            for replica, master in assignment.replicas
            if state.views[replica].myself.master_id != state.views[master].node_id
        ]
        if not todo:
            return state

        def replicate(pair: tuple[Member, Member]) -> None:
            replica, master = pair
            client = self.connector.client(replica.address)
            client.execute_command("CLUSTER", "REPLICATE", state.views[master].node_id)

        parallel(replicate, todo)
        for replica, master in todo:
            self._act(f"{replica.name} replicates {master.name}")
        # A node tells its new role only in its own packets, and the bus pings a given peer only every
        # few seconds: a MEET from each new replica to every node carries the news at once.
        replicas = {replica for replica, _ in todo}
        self._introduce(state, {r: [m for m in self.members if m != r] for r in replicas})
        return self._read()

    def _rebalance(self, state: _State) -> None:
        """Finish interrupted slot migrations, then give empty new masters their share of slots."""
        masters = [m for m in self.members if state.views[m].myself.is_master]
        moves = self._open_slot_moves(state) + plan_rebalance(
            {m: state.views[m].myself.slot_count for m in masters},
            {m: state.views[m].myself.slots for m in masters},
        )
        if not moves:
            return
        # A node that just joined keeps cluster_state:fail for up to the node timeout (Redis' rejoin
        # delay) and refuses MIGRATE's RESTORE until then.
        state = self._wait("every node to see cluster_state:ok before moving slots", self._state_complaints)
        keys = move_slots(self.connector, state.views, moves, self.progress)
        self._act(f"moved {len(moves)} slot(s) with {keys} key(s) over {len(masters)} masters")

    def _open_slot_moves(self, state: _State) -> list[SlotMove]:
        by_id = state.member_by_id()
        moves: dict[int, SlotMove] = {}
        for member, view in state.views.items():
            for slot, destination in view.myself.migrating.items():
                if destination in by_id:
                    moves[slot] = SlotMove(slot, member, by_id[destination])
            for slot, source in view.myself.importing.items():
                if source in by_id and slot not in moves:
                    moves[slot] = SlotMove(slot, by_id[source], member)
        return list(moves.values())

    def _state_complaints(self, state: _State) -> list[str]:
        complaints = self._membership_complaints(state)
        return complaints + [
            f"{m.name} reports cluster_state:{v.cluster_info.get('cluster_state')}"
            for m, v in state.views.items()
            if not v.state_ok
        ]

    def _done_complaints(self, state: _State) -> list[str]:
        return [f"{c.name}: {c.detail}" for c in failed(self._checks(state), DONE_CHECKS)]


def members_from_addresses(
    addresses: list[NodeAddress], k8s_nodes: dict[str, str] | None = None
) -> list[Member]:
    k8s_nodes = k8s_nodes or {}
    return [
        Member(address, str(address), k8s_nodes.get(str(address)), ordinal)
        for ordinal, address in enumerate(addresses)
    ]
