"""A rolling restart of a release's StatefulSet, as `kubectl rollout restart` does it, and its status.

Kubernetes level only: the drill that watches Redis meanwhile is helm_redis.drill.RolloutDrill.
"""

from __future__ import annotations

from datetime import UTC, datetime

from .drill import RolloutStatus
from .errors import KubernetesUnavailable, PodsNotFound

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


class StatefulSetRollout:
    """Restart every pod of one StatefulSet through its rolling update (the pod template annotation
    `kubectl.kubernetes.io/restartedAt`, patched through the AppsV1 API), and tell when it is complete:
    the controller has seen the change (observedGeneration), every pod runs the new revision and is
    Ready (updatedReplicas == replicas == readyReplicas) and currentRevision == updateRevision."""

    def __init__(self, api_client, namespace: str, name: str) -> None:
        from kubernetes import client

        self.apps = client.AppsV1Api(api_client)
        self.namespace = namespace
        self.name = name
        self.generation: int | None = None

    def start(self) -> None:
        from kubernetes.client.exceptions import ApiException

        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}}
        try:
            patched = self.apps.patch_namespaced_stateful_set(
                self.name,
                self.namespace,
                body,
                _content_type="application/merge-patch+json",
                _request_timeout=30,
            )
        except ApiException as error:
            raise KubernetesUnavailable(
                f"patching StatefulSet {self.name} (rolling restart) failed: {error.status} {error.reason}"
            ) from None
        self.generation = patched.metadata.generation

    def status(self) -> RolloutStatus:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            sts = self.apps.read_namespaced_stateful_set(self.name, self.namespace, _request_timeout=10)
        except (ApiException, HTTPError, OSError) as error:
            return RolloutStatus(False, f"cannot read StatefulSet {self.name}: {error}")
        return rollout_status(sts, self.generation)


def rollout_status(sts, generation: int | None = None) -> RolloutStatus:
    """Is this StatefulSet's rollout complete? (`generation`: the one our patch produced, at least.)"""
    spec, status = sts.spec, sts.status
    wanted = max(generation or 0, sts.metadata.generation or 0)
    observed = status.observed_generation or 0
    replicas = spec.replicas if spec.replicas is not None else 1
    updated = status.updated_replicas or 0
    ready = status.ready_replicas or 0
    current, update = status.current_revision or "", status.update_revision or ""
    detail = (
        f"{updated}/{replicas} pods updated, {ready}/{replicas} ready, "
        f"revision {current.rsplit('-', 1)[-1]} -> {update.rsplit('-', 1)[-1]}"
    )
    if observed < wanted:
        return RolloutStatus(False, f"waiting for the controller to see generation {wanted}; {detail}")
    complete = updated == replicas == ready and (status.replicas or 0) == replicas and current == update
    return RolloutStatus(complete, detail)


def release_rollout(target) -> StatefulSetRollout:
    """The rollout of a release's Redis StatefulSet (target: a helm_redis.release.ReleaseTarget)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        sets = (
            client.AppsV1Api(target.api.api_client)
            .list_namespaced_stateful_set(
                target.namespace, label_selector=target.selector, _request_timeout=10
            )
            .items
        )
    except ApiException as error:
        raise KubernetesUnavailable(
            f"listing StatefulSets in namespace {target.namespace!r} failed: {error.status} {error.reason}"
        ) from None
    if len(sets) != 1:
        raise PodsNotFound(
            f"release {target.name!r} has {len(sets)} Redis StatefulSets in namespace {target.namespace!r} "
            f"(selector {target.selector}): expected exactly one"
        )
    return StatefulSetRollout(target.api.api_client, target.namespace, sets[0].metadata.name)
