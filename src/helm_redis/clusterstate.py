"""The cluster as its members describe it: every member's own view, keyed by member (no I/O).

Shared by the operations that change a cluster (formation, scale-in, the reconciler): who owns slots, who
replicates whom, which slots no member serves, which slot moves are half done, and which node IDs the
members still list although no member is that node (departed nodes).
"""

from __future__ import annotations

from dataclasses import dataclass

from .clusterview import TOTAL_SLOTS, ClusterNode, NodeView
from .health import agreed_view
from .plan import Member
from .slots import SlotMove


@dataclass
class ClusterState:
    views: dict[Member, NodeView]

    def member_by_id(self) -> dict[str, Member]:
        return {view.node_id: member for member, view in self.views.items()}

    def owners(self) -> list[Member]:
        """Members that serve slots, in pod order."""
        return sorted((m for m, v in self.views.items() if v.myself.slots), key=lambda m: m.ordinal)

    def replicas(self) -> dict[Member, list[Member]]:
        """master member -> the members that replicate it (as each replica says itself)."""
        by_id = self.member_by_id()
        result: dict[Member, list[Member]] = {}
        for member, view in self.views.items():
            master = by_id.get(view.myself.master_id or "")
            if view.myself.is_replica and master is not None:
                result.setdefault(master, []).append(member)
        return result

    def placed(self) -> set[Member]:
        """Members with a role in the cluster: slot owners and replicas of members."""
        return set(self.owners()) | {r for rs in self.replicas().values() for r in rs}

    def total_keys(self) -> int:
        return sum(v.keys for v in self.views.values())

    def uncovered(self) -> list[int]:
        """Slots that no member serves (as each member says itself)."""
        served: set[int] = set()
        for view in self.views.values():
            for start, end in view.myself.slots:
                served.update(range(start, end + 1))
        return [slot for slot in range(TOTAL_SLOTS) if slot not in served]

    def open_slot_moves(self) -> list[SlotMove]:
        """Slot moves left half done (MIGRATING/IMPORTING) between two members."""
        by_id = self.member_by_id()
        moves: dict[int, SlotMove] = {}
        for member, view in self.views.items():
            for slot, destination in view.myself.migrating.items():
                if destination in by_id:
                    moves[slot] = SlotMove(slot, member, by_id[destination])
            for slot, source in view.myself.importing.items():
                if source in by_id and slot not in moves:
                    moves[slot] = SlotMove(slot, by_id[source], member)
        return list(moves.values())

    def departed(self) -> dict[str, ClusterNode]:
        """node id -> entry, for every node some member lists that is none of the members: a pod that
        lost its volume (its successor has a new ID), a pod removed by a scale-in, or a stranger.
        The entry comes from the view most members agree on when it lists the node."""
        ids = set(self.member_by_id())
        reference = agreed_view(list(self.views.values()))
        preferred = reference.by_id() if reference else {}
        found: dict[str, ClusterNode] = {}
        for view in self.views.values():
            for node in view.nodes:
                if node.node_id not in ids:
                    found.setdefault(node.node_id, preferred.get(node.node_id, node))
        return found

    def alive_somewhere(self, node_id: str) -> bool:
        """Some member still has a working link to the node and does not suspect it."""
        for view in self.views.values():
            node = view.by_id().get(node_id)
            if node is not None and node.connected and not node.is_failing and "noaddr" not in node.flags:
                return True
        return False

    def listed_by(self, node_id: str) -> list[Member]:
        return [m for m, v in self.views.items() if node_id in v.by_id()]
