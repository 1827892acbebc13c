"""What every operation that changes a cluster shares: reading every member (waiting, bounded, for the
ones that restart or load), polling until a condition holds, and recording what it did."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from .clusterstate import ClusterState
from .errors import ClusterNotComplete, NodesNotReady, PlanError
from .health import DONE_CHECKS, Check, Expectation, assess, failed
from .nodes import Connector, try_read_views
from .plan import Member

Progress = Callable[[str], None]


class _Result(Protocol):
    actions: list[str]


class ClusterOperation:
    result: _Result

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
        self.connector = connector
        self.members = sorted(members, key=lambda m: m.ordinal)
        self.masters = masters
        self.replicas_per_master = replicas_per_master
        self.timeout = timeout
        self.progress = progress
        self.deadline = time.monotonic() + timeout

    def _read(self) -> ClusterState:
        """Every member's view. Members that do not answer are waited for, bounded by the run's deadline:
        `helm upgrade` without --wait (and an Argo CD sync) runs the hooks while the StatefulSet still
        rolls, so pods restart and reload their data under them."""
        reported = ""
        while True:
            results = try_read_views(self.connector, [m.address for m in self.members])
            down = {m: r for m, r in zip(self.members, results, strict=True) if isinstance(r, Exception)}
            if not down:
                return ClusterState(dict(zip(self.members, results, strict=True)))  # type: ignore[arg-type]
            names = ", ".join(m.name for m in down)
            if time.monotonic() > self.deadline:
                first = next(iter(down.values()))
                raise NodesNotReady(f"{len(down)} node(s) still do not answer ({names}): {first}")
            if names != reported:
                self.progress(f"waiting for {len(down)} node(s) restarting or loading: {names}")
                reported = names
            time.sleep(0.5)

    def _checks(self, state: ClusterState) -> list[Check]:
        return assess(
            list(state.views.values()),
            Expectation(self.masters, self.replicas_per_master),
            names={str(m.address): m.name for m in self.members},
        )

    def _wait(self, what: str, condition: Callable[[ClusterState], list[str]]) -> ClusterState:
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

    def _membership_complaints(self, state: ClusterState) -> list[str]:
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

    def _state_complaints(self, state: ClusterState) -> list[str]:
        complaints = self._membership_complaints(state)
        return complaints + [
            f"{m.name} reports cluster_state:{v.cluster_info.get('cluster_state')}"
            for m, v in state.views.items()
            if not v.state_ok
        ]

    def _done_complaints(self, state: ClusterState) -> list[str]:
        return [f"{c.name}: {c.detail}" for c in failed(self._checks(state), DONE_CHECKS)]
