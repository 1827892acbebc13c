"""helm_redis.pod_events on Kubernetes' own pod objects (kubernetes.client models, as a watch yields them)."""

from datetime import UTC, datetime

from kubernetes.client import (
    V1ContainerState,
    V1ContainerStateRunning,
    V1ContainerStateTerminated,
    V1ContainerStateWaiting,
    V1ContainerStatus,
    V1ObjectMeta,
    V1Pod,
    V1PodStatus,
)

from helm_redis.pod_events import redis_gone

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def pod(state=None, last=None, deleted=False, grace=None, name="redis", ready=True) -> V1Pod:
    status = V1ContainerStatus(
        name=name, image="redis", image_id="", ready=ready, restart_count=1, state=state, last_state=last
    )
    return V1Pod(
        metadata=V1ObjectMeta(
            name="r-redis-cluster-0",
            deletion_timestamp=NOW if deleted else None,
            deletion_grace_period_seconds=grace,
        ),
        status=V1PodStatus(container_statuses=[status]),
    )


RUNNING = V1ContainerState(running=V1ContainerStateRunning(started_at=NOW))
EXITED = V1ContainerState(terminated=V1ContainerStateTerminated(exit_code=137, reason="Error"))
BACKOFF = V1ContainerState(waiting=V1ContainerStateWaiting(reason="CrashLoopBackOff"))


def test_a_terminated_redis_container_is_gone():
    assert "terminated (Error)" in redis_gone("MODIFIED", pod(EXITED))


def test_waiting_after_an_exit_is_gone():
    assert "waiting to restart" in redis_gone("MODIFIED", pod(BACKOFF, last=EXITED))


def test_a_force_deletion_is_gone_a_graceful_one_is_left_to_the_prestop_until_its_container_stops():
    assert "no preStop" in redis_gone("DELETED", pod(RUNNING, deleted=True, grace=0))
    assert "no preStop" in redis_gone("MODIFIED", pod(RUNNING, deleted=True, grace=0))
    assert redis_gone("MODIFIED", pod(RUNNING, deleted=True, grace=30)) is None  # the preStop runs
    # Stopped (handed over or not: helm_redis.takeover tells a replica from a master still serving slots).
    assert "terminated" in redis_gone("MODIFIED", pod(EXITED, deleted=True, grace=30))
    assert "containers have stopped" in redis_gone("DELETED", pod(RUNNING, deleted=True, grace=30))


def test_a_running_container_is_never_gone_even_not_ready():
    assert redis_gone("MODIFIED", pod(RUNNING, ready=False)) is None
    assert redis_gone("MODIFIED", pod(RUNNING, last=EXITED)) is None  # exited before, running again


def test_another_container_exiting_says_nothing_about_redis():
    assert redis_gone("MODIFIED", pod(EXITED, name="metrics")) is None


def test_a_pod_without_statuses_yet_is_not_gone():
    empty = V1Pod(metadata=V1ObjectMeta(name="p"), status=V1PodStatus())
    assert redis_gone("ADDED", empty) is None
