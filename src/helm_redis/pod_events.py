"""What a pod watch event says about a Redis process (issue 16's controller). Kubernetes level, pure: the
controller feeds it the events of `watch` on the release's pods; helm_redis.takeover then decides at the
Redis level whether a shard may be taken over.

Known gone, in the kubelet's own words: the Redis container's state is `terminated` (the process exited
and has not been restarted yet), or `waiting` with a `lastState.terminated` newer than the pod's previous
event (it exited and waits for its restart, CrashLoopBackOff included); or the pod was deleted with no grace
period (`kubectl delete --grace-period=0 --force`: its preStop never ran). Never "gone": a running
container, however slow (a frozen process is Redis's own failure detection's case), a pod whose node
stopped reporting (its status is stale, not terminated), or a graceful deletion (the preStop hands over).
"""

from __future__ import annotations

from typing import Any

REDIS_CONTAINER = "redis"


def redis_gone(event_type: str, pod: Any, container: str = REDIS_CONTAINER) -> str | None:
    """Why the pod's Redis process is known to be gone, or None. `pod` is a kubernetes.client V1Pod."""
    metadata, status = pod.metadata, pod.status
    if event_type == "DELETED" or metadata.deletion_timestamp is not None:
        grace = metadata.deletion_grace_period_seconds
        if grace == 0:
            return "deleted without a grace period: no preStop handover"
        return None  # a graceful deletion: the preStop hands over
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
