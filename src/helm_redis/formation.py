"""Form the cluster, or finish or grow it: read every node first, act only on what is missing.

Phases (redis-cli's create, plus what it lacks): preflight -> plan -> assign slots -> config epochs ->
MEET -> wait for agreement -> REPLICATE -> move slots to new masters -> wait until done. Every phase
is idempotent, so a run killed anywhere is finished by the next one, and a formed cluster is left
untouched. Nothing here ever resets or flushes a node.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

from . import membership
from .clusterstate import ClusterState
from .clusterview import NodeView, compress_slots, format_ranges
from .errors import PlanError, ShardLost, UnexpectedData
from .health import DONE_CHECKS, Check, failed
from .membership import LostShard, node_label
from .node_timeout import prevailing, read_node_timeouts, restore_node_timeouts, short_node_timeout
from .nodes import Connector, NodeAddress, parallel, resolve_host, wait_until_reachable
from .operation import ClusterOperation, Progress
from .plan import Assignment, Member, assign_roles, colocated, slot_ranges
from .slots import move_slots, plan_rebalance


@dataclass
class FormationResult:
    already_formed: bool
    actions: list[str] = field(default_factory=list)
    plan: list[dict[str, str]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    forgotten: list[str] = field(default_factory=list)
    lost_slots: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "already_formed": self.already_formed,
            "actions": self.actions,
            "plan": self.plan,
            "warnings": self.warnings,
            "forgotten": self.forgotten,
            "lost_slots": self.lost_slots,
            "checks": [c.as_dict() for c in self.checks],
            "seconds": round(self.seconds, 3),
        }


class Formation(ClusterOperation):
    """Form the cluster, or finish or grow it (see the module's docstring)."""

    def __init__(
        self,
        connector: Connector,
        members: list[Member],
        masters: int,
        replicas_per_master: int,
        timeout: float = 120.0,
        progress: Progress = lambda _msg: None,
        recover_lost_slots: bool = False,
        node_timeout: int | None = None,
    ) -> None:
        if len(members) < masters * (1 + replicas_per_master):
            raise PlanError(
                f"{masters} masters with {replicas_per_master} replica(s) each need "
                f"{masters * (1 + replicas_per_master)} nodes, only {len(members)} given"
            )
        super().__init__(connector, members, masters, replicas_per_master, timeout, progress)
        self.recover_lost_slots = recover_lost_slots
        self.node_timeout = node_timeout  # the configured cluster-node-timeout (ms), when known
        self.result = FormationResult(already_formed=False)

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
        if not dry_run:
            self._match_sync_setting()
            self._restore_node_timeouts()
        checks = self._checks(state)
        if not failed(checks, DONE_CHECKS):
            self.result.already_formed = True
            self.result.checks = checks
            self.result.seconds = time.monotonic() - started
            self.progress("already formed: nothing to do")
            return self.result
        if dry_run:
            lost = membership.lost_shards(state)
            if lost and not self.recover_lost_slots:
                raise ShardLost(self._lost_message(state, lost))
        else:
            state = self._resolve_departed(state)
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

        with self._formation_node_timeout(state):
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

    def _match_sync_setting(self) -> None:
        """A replica's first sync starts as soon as `repl-diskless-sync-max-replicas` replicas wait for
        it: that follows the replicas per master, and the chart does not restart every pod when it
        changes (a scale-in or scale-out of replicas), so it is set here, on the running nodes."""
        key, wanted = "repl-diskless-sync-max-replicas", str(self.replicas_per_master)
        values = parallel(lambda m: self.connector.client(m.address).config_get(key), self.members)
        stale = [m for m, value in zip(self.members, values, strict=True) if value.get(key) != wanted]
        if stale:
            parallel(lambda m: self.connector.client(m.address).config_set(key, wanted), stale)
            self.progress(f"{key} {wanted} set on {', '.join(m.name for m in stale)}")

    def _restore_node_timeouts(self) -> None:
        """A run killed while forming left nodes at the formation's short node timeout: put the
        configured one back first (helm_redis.node_timeout)."""
        if self.node_timeout is None:
            return
        restored = restore_node_timeouts(self.connector, [m.address for m in self.members], self.node_timeout)
        if restored:
            names = ", ".join(m.name for m in self.members if m.address in restored)
            self.progress(f"cluster-node-timeout {self.node_timeout} ms put back on {names}")

    def _formation_node_timeout(self, state: ClusterState) -> AbstractContextManager[None]:
        """A short node timeout while a fresh cluster forms (no slot served, no key anywhere): its masters
        turn `ok` 0.5 s after they meet a majority instead of 5 s (helm_redis.node_timeout). Anything else
        keeps the configured one: with slots or keys a short timeout means false failovers."""
        if state.owners() or state.total_keys():
            return nullcontext()
        addresses = [m.address for m in self.members]
        configured = self.node_timeout
        if configured is None:
            configured = prevailing(read_node_timeouts(self.connector, addresses).values())
        return short_node_timeout(self.connector, addresses, configured, self.progress)

    def _settling(self, state: ClusterState) -> bool:
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
            and not state.open_slot_moves()
        )

    # -- departed nodes --------------------------------------------------------------------------

    def _resolve_departed(self, state: ClusterState) -> ClusterState:
        """Node IDs the members list but no member is (a lost volume, a scale-in, a restart without
        persistence): wait for Redis to promote a replica where a gone master has one, give a shard that
        lost every copy to an empty member only when asked to, then forget the gone IDs everywhere."""
        if not state.departed():
            return state
        lost = membership.lost_shards(state)
        if lost:
            if not self.recover_lost_slots:
                raise ShardLost(self._lost_message(state, lost))
            state = self._recover_lost_slots(state, lost)
        for node_id, node in membership.stranded_masters(state).items():
            replica = membership.best_replica(state, node_id)
            if replica is not None:
                self.connector.client(replica.address).execute_command("CLUSTER", "FAILOVER", "FORCE")
                self._act(
                    f"{replica.name} takes over from {node_label(node)}, whose address another node has"
                )
        if membership.awaiting_failover(state):
            state = self._wait(
                "Redis to promote a replica of each departed master",
                lambda s: [
                    f"{node_label(n)} still owns slots" for n in membership.awaiting_failover(s).values()
                ],
            )
        if any(not n.slots for n in membership.strangers(state).values()):
            # A pod that a scale-in removes still answers while it stops.
            state = self._wait(
                "departed nodes to stop",
                lambda s: [
                    f"{node_label(n)} still answers" for n in membership.strangers(s).values() if not n.slots
                ],
            )
        gone = membership.gone(state)
        if gone:
            membership.forget(self.connector, state, list(gone))
            labels = [node_label(n) for n in gone.values()]
            self.result.forgotten += labels
            self._act(f"forgot departed node(s) {', '.join(labels)} on every node")
            state = self._wait(
                "every node to forget the departed nodes",
                lambda s: [
                    f"{m.name} still lists {node_label(n)}" for i, n in gone.items() for m in s.listed_by(i)
                ],
            )
        return state

    def _lost_message(self, state: ClusterState, lost: list[LostShard]) -> str:
        return (
            f"{len(lost)} shard(s) lost their master and every replica with their data: "
            + membership.lost_shards_text(state, lost)
            + ". Bring back a volume of one of those pods if you can; or accept the loss: run `helm-redis "
            "init --recover-lost-slots` (chart: helm upgrade --set cluster.recoverLostSlots=true once), "
            "which gives those slots to an empty node"
        )

    def _recover_lost_slots(self, state: ClusterState, lost: list[LostShard]) -> ClusterState:
        """The explicit opt-in: forget the lost shard's nodes, then give its slots to an empty member
        (preferably the pod that ran its master), accepting that their keys are gone."""
        placed = state.placed()
        empty = [m for m, v in state.views.items() if m not in placed and not v.keys and not v.myself.slots]
        for shard in lost:
            successor = membership.successor_of(shard.master, empty)
            if successor is None and not empty:
                raise ShardLost(
                    f"{shard.describe()}: no empty node is left to take them; add a pod or free one, then "
                    "run again"
                )
            target = successor or empty[0]
            empty.remove(target)
            ids = [shard.master.node_id] + [r.node_id for r in shard.replicas]
            membership.forget(self.connector, state, ids)
            args: list[int] = [bound for slot_range in shard.slots for bound in slot_range]
            client = self.connector.client(target.address)
            client.execute_command("CLUSTER", "ADDSLOTSRANGE", *args)
            if not state.views[target].knows_only_itself:
                # A lonely node gets a fresh epoch before MEET (below); one already in the cluster needs
                # a higher one for its claim to win everywhere.
                client.execute_command("CLUSTER", "BUMPEPOCH")
            lost_text = format_ranges(shard.slots)
            self.result.lost_slots.append(lost_text)
            self.result.forgotten += [node_label(shard.master)] + [node_label(r) for r in shard.replicas]
            self.result.warnings.append(
                f"slots {lost_text} were lost with {shard.describe()}; {target.name} serves them now, empty"
            )
            self._act(f"gave the lost slots {lost_text} to {target.name} (their keys are lost)")
        return self._read()

    # -- safety ----------------------------------------------------------------------------------

    def _refuse_unexpected_data(self, state: ClusterState) -> None:
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

    def _plan(self, state: ClusterState) -> tuple[Assignment, dict[Member, list[int]]]:
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

    def _record_plan(
        self, state: ClusterState, assignment: Assignment, slot_plan: dict[Member, list[int]]
    ) -> None:
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

    def _assign_slots(self, state: ClusterState, slot_plan: dict[Member, list[int]]) -> None:
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

    def _set_config_epochs(self, state: ClusterState) -> None:
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

    def _meet(self, state: ClusterState) -> ClusterState:
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

    def _introduce(self, state: ClusterState, todo: dict[Member, list[Member]]) -> None:
        """CLUSTER MEET from each member to the listed ones, one pipeline per member."""

        def meet(item: tuple[Member, list[Member]]) -> None:
            member, others = item
            pipe = self.connector.client(member.address).pipeline(transaction=False)
            for other in others:
                pipe.execute_command("CLUSTER", "MEET", *self._meet_address(other, state.views[other]))
            pipe.execute()

        parallel(meet, todo.items())

    def _replicate(self, state: ClusterState, assignment: Assignment) -> ClusterState:
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

    def _rebalance(self, state: ClusterState) -> None:
        """Finish interrupted slot migrations, then give empty new masters their share of slots."""
        masters = [m for m in self.members if state.views[m].myself.is_master]
        moves = state.open_slot_moves() + plan_rebalance(
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


def members_from_addresses(
    addresses: list[NodeAddress], k8s_nodes: dict[str, str] | None = None
) -> list[Member]:
    k8s_nodes = k8s_nodes or {}
    return [
        Member(address, str(address), k8s_nodes.get(str(address)), ordinal)
        for ordinal, address in enumerate(addresses)
    ]
