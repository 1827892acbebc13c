"""Kubernetes-level work: configuration, finding the release's pods and where they run.

Everything that talks to the Kubernetes API lives here (and in portforward.py); the Redis-level modules
never import it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import KubernetesUnavailable, PodsNotFound
from .nodes import NodeAddress
from .plan import Member


@dataclass(frozen=True)
class PodInfo:
    name: str
    ordinal: int
    ip: str | None
    k8s_node: str | None
    ready: bool
    restarts: int
    deleting: bool = False


def core_api(context: str | None = None, kubeconfig: str | None = None):  # -> CoreV1Api
    """A CoreV1Api from the in-cluster service account, else from kubeconfig (context optional)."""
    from kubernetes import client, config

    try:
        if kubeconfig is None and context is None:
            try:
                config.load_incluster_config()
                return client.CoreV1Api()
            except config.ConfigException:
                pass
        config.load_kube_config(config_file=kubeconfig, context=context)
    except (config.ConfigException, FileNotFoundError, OSError) as error:
        raise KubernetesUnavailable(f"no Kubernetes configuration: {error}") from None
    return client.CoreV1Api()


def _ordinal(name: str) -> int:
    suffix = name.rsplit("-", 1)[-1]
    return int(suffix) if suffix.isdigit() else 0


def list_pods(api, namespace: str, selector: str) -> list[PodInfo]:
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        items = api.list_namespaced_pod(namespace, label_selector=selector, _request_timeout=10).items
    except ApiException as error:
        raise KubernetesUnavailable(
            f"listing pods in namespace {namespace!r} failed: {error.status} {error.reason}"
        ) from None
    except (HTTPError, OSError) as error:
        raise KubernetesUnavailable(f"the Kubernetes API is unreachable: {error}") from None
    pods = []
    for item in items:
        statuses = item.status.container_statuses or []
        ready = any(c.type == "Ready" and c.status == "True" for c in item.status.conditions or [])
        pods.append(
            PodInfo(
                name=item.metadata.name,
                ordinal=_ordinal(item.metadata.name),
                ip=item.status.pod_ip,
                k8s_node=item.spec.node_name,
                ready=ready,
                restarts=sum(c.restart_count for c in statuses),
                deleting=item.metadata.deletion_timestamp is not None,
            )
        )
    return sorted(pods, key=lambda p: p.ordinal)


def statefulset_members(
    statefulset: str,
    service: str,
    namespace: str,
    cluster_domain: str,
    port: int,
    pods: int,
    k8s_nodes: dict[str, str] | None = None,
) -> list[Member]:
    """The release's nodes by their stable DNS names (ordinals 0..pods-1), as seen from inside the cluster."""
    if pods < 1:
        raise PodsNotFound(f"--pods must be at least 1 (got {pods})")
    k8s_nodes = k8s_nodes or {}
    members = []
    for ordinal in range(pods):
        name = f"{statefulset}-{ordinal}"
        host = f"{name}.{service}.{namespace}.svc.{cluster_domain}"
        members.append(Member(NodeAddress(host, port), name, k8s_nodes.get(name), ordinal))
    return members


def pod_nodes(namespace: str, selector: str) -> tuple[dict[str, str], str | None]:
    """pod name -> k8s node, or an explanation of why it is unknown (then topology is not used)."""
    try:
        api = core_api()
        return {p.name: p.k8s_node for p in list_pods(api, namespace, selector) if p.k8s_node}, None
    except KubernetesUnavailable as error:
        return {}, str(error)


def running_pod_count(namespace: str, selector: str) -> int:
    """How many pods the StatefulSet runs now (highest ordinal + 1; 0 without pods): a scale-in's hook
    runs with the new values while the old pods still run."""
    pods = list_pods(core_api(), namespace, selector)
    return max((p.ordinal for p in pods), default=-1) + 1


def watch_pods(
    api,
    namespace: str,
    selector: str,
    on_event: Callable[[str, Any], None],
    on_watching: Callable[[str | None], None],
    stop: threading.Event,
    window_seconds: int = 60,
    retry_seconds: float = 2.0,
) -> None:
    """List, then watch, the selected pods until `stop` is set: `on_event(type, V1Pod)` for every pod of
    the list ("ADDED") and every change after it. `on_watching(None)` once the watch is established,
    `on_watching(why)` when it broke (the API unreachable, the permission gone); then it lists again after
    `retry_seconds`. A watch window ends every `window_seconds` and is resumed from the last version seen,
    so a silently dead connection is noticed within a window."""
    from kubernetes import watch
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    while not stop.is_set():
        try:
            listed = api.list_namespaced_pod(namespace, label_selector=selector, _request_timeout=10)
            for pod in listed.items:
                on_event("ADDED", pod)
            version = listed.metadata.resource_version
            on_watching(None)
            while not stop.is_set():
                stream = watch.Watch().stream(
                    api.list_namespaced_pod,
                    namespace,
                    label_selector=selector,
                    resource_version=version,
                    timeout_seconds=window_seconds,
                    _request_timeout=window_seconds + 10,
                )
                for event in stream:
                    if event["type"] == "ERROR":  # e.g. 410: the version is too old; list again
                        raise ApiException(status=event["raw_object"].get("code"), reason="watch error")
                    pod = event["object"]
                    version = pod.metadata.resource_version
                    on_event(event["type"], pod)
        except ApiException as error:
            if error.status == 410:
                continue  # the version is too old: list again at once, the watch never broke
            on_watching(f"the pod watch failed: {error.status} {error.reason}")
        except (HTTPError, OSError) as error:
            on_watching(f"the Kubernetes API is unreachable: {error}")
        stop.wait(retry_seconds)
