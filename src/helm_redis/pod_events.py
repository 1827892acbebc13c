"""What a pod watch event says about a Redis process (issue 16's controller). Kubernetes level, pure: the
controller feeds it the events of `watch` on the release's pods; helm_redis.takeover then decides at the
Redis level whether a shard may be taken over.

Known gone, in the kubelet's own words: the Redis container's state is `terminated` (the process exited
and has not been restarted yet; also at the end of a graceful deletion), or `waiting` after a
`lastState.terminated` (it exited and waits for its restart, CrashLoopBackOff included); or the pod was
deleted with no grace period (`kubectl delete --grace-period=0 --force`: its preStop never ran), or its
object is gone (a graceful deletion ends only after its containers stopped). Never "gone": a running
container, however slow (a frozen process is Redis's own failure detection's case), a pod whose node
stopped reporting (its status is stale, not terminated), or a graceful deletion still under way (its preStop
hands over). After a finished handover the stopped node is a replica, and helm_redis.takeover finds
nothing to take over; when the preStop could not hand over, the shard is taken over at once.
"""

from __future__ import annotations

from typing import Any

REDIS_CONTAINER = "redis"


def redis_gone(event_type: str, pod: Any, container: str = REDIS_CONTAINER) -> str | None:
    """Why the pod's Redis process is known to be gone, or None. `pod` is a kubernetes.client V1Pod."""
    metadata, status = pod.metadata, pod.status
    deleting = event_type == "DELETED" or metadata.deletion_timestamp is not None
    if deleting and metadata.deletion_grace_period_seconds == 0:
        return "deleted without a grace period: no preStop handover"
    if event_type == "DELETED":
        # A graceful deletion ends (the object goes) only once the kubelet has stopped every container.
        return "pod deleted: its containers have stopped"
    statuses = {s.name: s for s in (status.container_statuses or [])} if status else {}
    redis_status = statuses.get(container)
    if redis_status is None or redis_status.state is None:
        return None
    if redis_status.state.terminated is not None:
        return f"container {container} terminated ({redis_status.state.terminated.reason or 'exit'})"
    last = redis_status.last_state.terminated if redis_status.last_state else None
    if redis_status.state.waiting is not None and last is not None:
        return f"container {container} exited ({last.reason or 'exit'}), waiting to restart"
    return None
