"""The failover controller: promote a dead master's replica about a second after Kubernetes knows the
master's process is gone, instead of after cluster-node-timeout, the failure reports and the election.

Kubernetes knows first: the kubelet reports a container terminated within about a second, and a pod
deleted with no grace period (no preStop handover) shows in the watch at once. This module joins the two
layers: `helm_redis.pod_events` says which watch events mean "the Redis process is gone" (never a running
container, however slow; never a graceful deletion while its preStop hands over), and
`helm_redis.takeover` decides at the Redis level whether the shard may be taken over now and by whom
(the old master does not answer, a majority of masters does, the replica with the highest offset) and asks
it with CLUSTER FAILOVER FORCE, which still needs the masters' votes: the controller can never make two
masters for one slot range, and when it is absent or wrong Redis's own failure detection still works.

Every decision is logged with its reason. One takeover at a time per pod; different pods in parallel (two
masters dying at once get one promotion each).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from .nodes import Connector, NodeAddress
from .pod_events import redis_gone
from .takeover import take_over

Log = Callable[[str], None]


class FailoverController:
    def __init__(
        self,
        connector: Connector,
        address_of: Callable[[Any], NodeAddress | None],
        log: Log,
        answering_grace: float = 10.0,
        promotion_timeout: float = 10.0,
    ) -> None:
        self.connector = connector
        self.address_of = address_of  # where a pod's Redis listens (its IP and the release's port)
        self.log = log
        # A pod force-deleted while its process still runs: the kubelet kills it within seconds; until
        # then it answers, and the takeover is retried (a process that keeps answering is left to Redis).
        self.answering_grace = answering_grace
        self.promotion_timeout = promotion_timeout
        self._addresses: dict[str, NodeAddress] = {}  # pod name -> address, as the watch last showed it
        self._busy: set[str] = set()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []

    def on_event(self, event_type: str, pod: Any) -> None:
        """Feed one watch event; a takeover, if the event calls for one, runs in a thread of its own."""
        name = pod.metadata.name
        address = self.address_of(pod)
        with self._lock:
            if event_type == "DELETED":
                self._addresses.pop(name, None)
            elif address is not None:
                self._addresses[name] = address
        why = redis_gone(event_type, pod)
        if why is None:
            return
        if address is None:
            self.log(f"{name}: {why}; no pod IP known, nothing to do")
            return
        with self._lock:
            if name in self._busy:
                return  # a takeover for this pod is under way
            self._busy.add(name)
        retry = event_type == "DELETED" or pod.metadata.deletion_timestamp is not None
        worker = threading.Thread(target=self._act, args=(name, address, why, retry), daemon=True)
        self._workers = [w for w in self._workers if w.is_alive()] + [worker]
        worker.start()

    def wait(self, timeout: float) -> None:
        """Until the takeovers under way have ended (tests, and a clean stop)."""
        deadline = time.monotonic() + timeout
        for worker in list(self._workers):
            worker.join(max(0.0, deadline - time.monotonic()))

    def _act(self, name: str, address: NodeAddress, why: str, retry_while_answering: bool) -> None:
        try:
            self.log(self.decide(name, address, why, retry_while_answering))
        except Exception as error:  # a worker must never die silently: Redis's own failover remains
            self.log(f"{name}: {why}; takeover not attempted: {error}")
        finally:
            with self._lock:
                self._busy.discard(name)

    def decide(self, name: str, dead: NodeAddress, why: str, retry_while_answering: bool) -> str:
        """Take over the shard of the master that ran in pod `name` at `dead`, when safe; the log line."""
        started = time.monotonic()
        deadline = started + (self.answering_grace if retry_while_answering else 0.0)
        while True:
            with self._lock:
                others = [a for pod, a in self._addresses.items() if pod != name]
            result = take_over(self.connector, others, dead, None, self.promotion_timeout)
            if not result.dead_answers or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        elapsed = time.monotonic() - started
        if result.promoted is None:
            return f"{name} ({dead}): {why}; no takeover: {result.reason}"
        return f"{name} ({dead}): {why}; promoted {result.promoted} in {elapsed:.2f} s: {result.reason}"
