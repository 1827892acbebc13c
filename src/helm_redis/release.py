"""A Helm release as the plugin sees it: its expected shape (from the release's values), its pods (by the
release's labels), its login (user `admin`, from the Secret the pods mount), and port-forwards to reach them.

Namespace, context and kubeconfig come from Helm's environment (HELM_NAMESPACE, HELM_KUBECONTEXT,
KUBECONFIG), because Helm strips -n/--kube-context/--kubeconfig before a plugin sees them.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .credentials import ADMIN_USER, Credentials, password_key, password_lines
from .errors import KubernetesUnavailable, PasswordSecretMissing, PodsNotFound, ReleaseNotFound
from .faults import CommandFaults, freeze, hang_seconds
from .health import Check, Expectation
from .k8s import PodInfo, core_api, list_pods
from .nodes import Connector, NodeAddress
from .plan import Member
from .portforward import PodForwarder
from .tlsconfig import CA_FILE, CERT_FILE, KEY_FILE, TlsSettings


def selects(selector, labels: dict[str, str]) -> bool:
    """Does a LabelSelector (of the Kubernetes client) match these labels? An empty one matches all."""
    if selector is None:
        return True
    if any(labels.get(k) != v for k, v in (selector.match_labels or {}).items()):
        return False
    for expression in selector.match_expressions or []:
        present, value = expression.key in labels, labels.get(expression.key)
        allowed = {
            "In": present and value in (expression.values or []),
            "NotIn": not present or value not in (expression.values or []),
            "Exists": present,
            "DoesNotExist": not present,
        }
        if not allowed.get(expression.operator, False):
            return False
    return True


def release_values(name: str, namespace: str, context: str | None, kubeconfig: str | None) -> dict[str, Any]:
    """The release's computed values, read through Helm (pyhelm3)."""
    from pyhelm3 import Client
    from pyhelm3 import errors as helm_errors

    # pyhelm3 logs every failed helm command; the error below already says it, in one line.
    logging.getLogger("pyhelm3").setLevel(logging.CRITICAL)

    executable = os.environ.get("HELM_BIN", "helm")
    # pyhelm3's Client asserts the executable exists (an AssertionError, not FileNotFoundError).
    if shutil.which(executable) is None:
        raise KubernetesUnavailable(
            f"the helm executable {executable!r} was not found (set HELM_BIN or PATH)"
        )

    async def read() -> dict[str, Any]:
        client = Client(
            executable=executable,
            kubeconfig=kubeconfig,
            kubecontext=context,
        )
        revision = await client.get_current_revision(name, namespace=namespace)
        return await revision.values(computed=True)

    try:
        return asyncio.run(read())
    except helm_errors.ReleaseNotFoundError:
        raise ReleaseNotFound(
            f"release {name!r} not found in namespace {namespace!r} "
            "(set the namespace with helm -n NAMESPACE)"
        ) from None
    except helm_errors.ConnectionError as error:
        raise KubernetesUnavailable(f"Helm cannot reach the cluster: {_last_line(error)}") from None
    except helm_errors.Error as error:
        raise KubernetesUnavailable(f"helm failed reading release {name!r}: {_last_line(error)}") from None
    except subprocess.CalledProcessError:  # pyhelm3 asks the executable for its version first
        raise KubernetesUnavailable(
            f"{executable!r} did not answer `version` as Helm does: point HELM_BIN or PATH at Helm"
        ) from None


def _last_line(error: Exception) -> str:
    text = str(getattr(error, "stderr", b"") or error)
    if isinstance(getattr(error, "stderr", None), bytes):
        text = error.stderr.decode(errors="replace")  # type: ignore[attr-defined]
    return text.strip().splitlines()[-1] if text.strip() else type(error).__name__


@dataclass
class ReleaseTarget:
    """Everything verify and drill need to reach a release's cluster from outside."""

    name: str
    namespace: str
    expected: Expectation
    port: int
    pods: list[PodInfo]
    members: list[Member]
    connector: Connector
    forwarder: PodForwarder
    api: Any
    selector: str
    persistent: dict[str, bool] = field(default_factory=dict)
    tls_files: Path | None = None  # the TLS Secret's files, copied for this process

    @property
    def names(self) -> dict[str, str]:
        return {str(m.address): m.name for m in self.members}

    @property
    def k8s_nodes(self) -> dict[str, str]:
        return {str(m.address): m.k8s_node for m in self.members if m.k8s_node}

    def pod_checks(self) -> list[Check]:
        expected_pods = (self.expected.masters or 0) * (1 + (self.expected.replicas_per_master or 0))
        not_ready = [p.name for p in self.pods if not p.ready]
        restarts = {p.name: p.restarts for p in self.pods if p.restarts}
        checks = [
            Check(
                "pods-ready",
                "fail" if not_ready or len(self.pods) < expected_pods else "pass",
                (f"not ready: {', '.join(not_ready)}; " if not_ready else "")
                + f"{len(self.pods) - len(not_ready)}/{expected_pods} pods Ready",
            ),
            Check(
                "pod-restarts",
                "warn" if restarts else "pass",
                ", ".join(f"{k}: {v}" for k, v in restarts.items()) or "no container restarts",
            ),
        ]
        ephemeral = [pod for pod, persistent in self.persistent.items() if not persistent]
        checks.append(
            Check(
                "data-on-persistent-volume",
                "fail" if ephemeral else "pass",
                f"nodes.conf and AOF on an emptyDir (lost on restart): {', '.join(ephemeral)}"
                if ephemeral
                else "nodes.conf and AOF live on each pod's PersistentVolumeClaim",
            )
        )
        return checks

    def failover_controller_check(self) -> Check:
        """Does the failover controller run (and watch)? Its pod is Ready only while its pod watch works."""
        selector = f"app.kubernetes.io/instance={self.name},app.kubernetes.io/component=failover"
        pods = [p for p in list_pods(self.api, self.namespace, selector) if not p.deleting]
        if not pods:
            return Check(
                "failover-controller",
                "pass",
                "off: an unplanned failover waits for Redis's own detection (cluster.nodeTimeout + election)",
            )
        if any(p.ready for p in pods):
            return Check("failover-controller", "pass", f"running ({pods[0].name}): watching the Redis pods")
        return Check(
            "failover-controller",
            "fail",
            f"{', '.join(p.name for p in pods)} not ready: its pod watch is broken or it does not run, so "
            "unplanned failovers wait for Redis's own detection (see its log: kubectl logs "
            f"{pods[0].name})",
        )

    def network_policy_check(self) -> Check:
        """Does a NetworkPolicy select the Redis pods? (Whether a policy engine enforces it, the API
        cannot tell.)"""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        first = self.api.read_namespaced_pod(self.pods[0].name, self.namespace, _request_timeout=10)
        labels = first.metadata.labels or {}
        try:
            policies = (
                client.NetworkingV1Api(self.api.api_client)
                .list_namespaced_network_policy(self.namespace, _request_timeout=10)
                .items
            )
        except ApiException as error:
            return Check(
                "network-policy", "warn", f"cannot list NetworkPolicies: {error.status} {error.reason}"
            )
        selecting = [p.metadata.name for p in policies if selects(p.spec.pod_selector, labels)]
        if not selecting:
            return Check(
                "network-policy",
                "warn",
                f"no NetworkPolicy selects the Redis pods in namespace {self.namespace!r}: any pod that "
                "reaches them may connect (networkPolicy.enabled)",
            )
        return Check("network-policy", "pass", f"the Redis pods are selected by {', '.join(selecting)}")

    def close(self) -> None:
        self.connector.close()
        self.forwarder.close()
        if self.tls_files is not None:
            shutil.rmtree(self.tls_files, ignore_errors=True)

    def faults(self) -> PodFaults:
        return PodFaults(self)

    def delete_pod(self, pod: str, grace_seconds: int | None) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        try:
            self.api.delete_namespaced_pod(
                pod, self.namespace, body=client.V1DeleteOptions(grace_period_seconds=grace_seconds)
            )
        except ApiException as error:
            if error.status == 404:
                raise PodsNotFound(f"pod {pod!r} not found in namespace {self.namespace!r}") from None
            raise KubernetesUnavailable(f"deleting pod {pod} failed: {error.status} {error.reason}") from None


def shape_from_statefulset(api, namespace: str, name: str) -> tuple[Expectation, int] | None:
    """(expected shape, port) from the chart's StatefulSet of that release name, or None if there is none.

    Replicas per master come from the chart's redis.conf (`repl-diskless-sync-max-replicas`).
    """
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    selector = f"app.kubernetes.io/instance={name},app.kubernetes.io/name=redis-cluster"
    try:
        sets = (
            client.AppsV1Api(api.api_client)
            .list_namespaced_stateful_set(namespace, label_selector=selector, _request_timeout=10)
            .items
        )
        if not sets:
            return None
        spec = sets[0].spec.template.spec
        config = next(v.config_map.name for v in spec.volumes if v.name == "config" and v.config_map)
        conf = api.read_namespaced_config_map(config, namespace, _request_timeout=10).data["redis.conf"]
    except (ApiException, StopIteration, KeyError, TypeError) as error:
        raise KubernetesUnavailable(f"reading the StatefulSet of {name!r} failed: {error}") from None
    settings = dict(line.split(None, 1) for line in conf.splitlines() if line.strip() and " " in line)
    per_master = int(settings.get("repl-diskless-sync-max-replicas", "1"))
    # With TLS the client port is tls-port (`port` is 0, or the optional plain one).
    port = int(settings.get("tls-port") or settings.get("port", "6379"))
    node_timeout = int(settings["cluster-node-timeout"]) if "cluster-node-timeout" in settings else None
    return Expectation(sets[0].spec.replicas // (1 + per_master), per_master, node_timeout), port


def _read_secret(api, namespace: str, name: str, what: str) -> dict[str, str]:
    """The data of a Secret the Redis pods mount (base64 values), with errors that say what to do."""
    from kubernetes.client.exceptions import ApiException

    where = f"Secret {name!r} in namespace {namespace!r}"
    try:
        return api.read_namespaced_secret(name, namespace, _request_timeout=10).data or {}
    except ApiException as error:
        if error.status == 404:
            raise PasswordSecretMissing(
                f"the Redis pods read their {what} from {where}, but it does not exist: upgrade the release "
                "(its pre-install hook creates the passwords' Secret), or create it with the keys the "
                "chart's README lists"
            ) from None
        if error.status == 403:
            raise KubernetesUnavailable(
                f"not allowed to read the {what} from {where} (403 Forbidden): verify and drill need get "
                "on that Secret"
            ) from None
        raise KubernetesUnavailable(
            f"reading the {what} from {where} failed: {error.status} {error.reason}"
        ) from None


def _secret_volume(pod_spec, volume_name: str) -> str | None:
    volume = next((v for v in pod_spec.volumes or [] if v.name == volume_name and v.secret), None)
    return volume.secret.secret_name if volume else None


def _credentials(api, namespace: str, pod_spec) -> Credentials | None:
    """The login the tools in the Redis pods use: user `admin` with the passwords of the Secret mounted
    as their `auth` volume; None when the pods run without authentication."""
    name = _secret_volume(pod_spec, "auth")
    if name is None:
        return None
    key = password_key(ADMIN_USER)
    where = f"key {key!r} of Secret {name!r} in namespace {namespace!r}"
    data = _read_secret(api, namespace, name, "passwords")
    if key not in data:
        keys = ", ".join(sorted(data)) or "none"
        raise PasswordSecretMissing(
            f"the Redis pods read the tools' password from {where}, but that Secret has no such key "
            f"(its keys: {keys}): add it (one password per line)"
        )
    passwords = password_lines(base64.b64decode(data[key]).decode())
    if not passwords:
        raise PasswordSecretMissing(f"{where} is empty: put a password in it")
    return Credentials(ADMIN_USER, passwords)


def _tls_from_pods(api, namespace: str, pod_spec) -> tuple[TlsSettings, Path] | None:
    """The TLS the tools in the Redis pods use, when they mount a `tls` volume: the Secret's files copied
    into a private temporary directory (removed by ReleaseTarget.close) and the name the certificate
    must carry (REDIS_TLS_SERVER_NAME of the redis container)."""
    name = _secret_volume(pod_spec, "tls")
    if name is None:
        return None
    data = _read_secret(api, namespace, name, "TLS certificate")
    missing = [key for key in (CA_FILE, CERT_FILE, KEY_FILE) if key not in data]
    if missing:
        raise PasswordSecretMissing(
            f"TLS Secret {name!r} in namespace {namespace!r} lacks {', '.join(missing)}: give it tls.crt, "
            "tls.key and ca.crt (tls.existingSecret in the chart's README)"
        )
    env = {e.name: e.value for c in pod_spec.containers if c.name == "redis" for e in c.env or []}
    directory = Path(tempfile.mkdtemp(prefix="helm-redis-tls-"))
    for key in (CA_FILE, CERT_FILE, KEY_FILE):
        path = directory / key
        path.touch(mode=0o600)
        path.write_bytes(base64.b64decode(data[key]))
    return TlsSettings.from_directory(directory, env.get("REDIS_TLS_SERVER_NAME")), directory


def open_release(
    name: str,
    namespace: str | None = None,
    context: str | None = None,
    kubeconfig: str | None = None,
    timeout: float = 5.0,
    credentials: Credentials | None = None,
    tls: TlsSettings | None = None,
) -> ReleaseTarget:
    namespace = namespace or os.environ.get("HELM_NAMESPACE") or "default"
    context = context or os.environ.get("HELM_KUBECONTEXT") or None
    kubeconfig = kubeconfig or os.environ.get("KUBECONFIG") or None
    try:
        values = release_values(name, namespace, context, kubeconfig)
        cluster = values.get("cluster", {})
        expected = Expectation(
            int(cluster.get("masters", 3)),
            int(cluster.get("replicasPerMaster", 1)),
            int(cluster.get("nodeTimeout", 5000)),
        )
        port = int(values.get("redis", {}).get("port", 6379))
        api = core_api(context, kubeconfig)
    except ReleaseNotFound as missing:
        # Argo CD renders the chart with `helm template`: its applications have no Helm release. The
        # shape is then read from what the chart deployed under that release name.
        api = core_api(context, kubeconfig)
        shape = shape_from_statefulset(api, namespace, name)
        if shape is None:
            raise missing from None
        expected, port = shape
    selector = f"app.kubernetes.io/instance={name},app.kubernetes.io/component=redis"
    pods = [p for p in list_pods(api, namespace, selector) if not p.deleting]
    if not pods:
        raise PodsNotFound(f"release {name!r} has no Redis pods in namespace {namespace!r}")
    items = {i.metadata.name: i for i in api.list_namespaced_pod(namespace, label_selector=selector).items}
    first = items[pods[0].name]
    credentials = credentials or _credentials(api, namespace, first.spec)
    tls_files: Path | None = None
    if tls is None and (found := _tls_from_pods(api, namespace, first.spec)):
        tls, tls_files = found
    persistent = {
        pod: any(v.name == "data" and v.persistent_volume_claim is not None for v in item.spec.volumes or [])
        for pod, item in items.items()
    }

    def pod_ips() -> dict[str, str]:
        return {p.ip: p.name for p in list_pods(api, namespace, selector) if p.ip}

    forwarder = PodForwarder(api, namespace, port, pod_ips)
    members = [Member(NodeAddress(p.name, port), p.name, p.k8s_node, p.ordinal) for p in pods]
    connector = Connector(credentials, forwarder.address_map, timeout=timeout, tls=tls)
    return ReleaseTarget(
        name,
        namespace,
        expected,
        port,
        pods,
        members,
        connector,
        forwarder,
        api,
        selector,
        persistent,
        tls_files,
    )


class PodFaults:
    """The drill's faults on a release's pods (see helm_redis.drill.MODES for what each one expects):

    - graceful: a normal deletion; the kubelet runs the preStop, which hands the slots over.
    - restart: SHUTDOWN NOSAVE NOW; the kubelet restarts the container in the same pod (init containers
      do not run again).
    - hang: the process freezes (DEBUG SLEEP, 2 x node timeout + 3 s) and wakes by itself.
    - crash: the process freezes, then the pod is deleted with grace period 0. A force deletion still
      runs the preStop, but its calls to the frozen Redis get no answer, so no handover can happen before
      the kubelet kills the container (like a node lost with its pod); the StatefulSet recreates the pod.
    """

    # A crash keeps the process frozen until the kubelet kills it (seconds after the force deletion).
    CRASH_FREEZE_SECONDS = 60.0

    def __init__(self, target: ReleaseTarget) -> None:
        self.target = target

    def inject(self, member: Member, mode: str) -> None:
        connector = self.target.connector
        if mode == "graceful":
            self.target.delete_pod(member.name, None)
        elif mode in ("restart", "hang"):
            CommandFaults(connector).inject(member, mode)  # type: ignore[arg-type]
        elif mode == "crash":
            seconds = max(hang_seconds(connector, member.address), self.CRASH_FREEZE_SECONDS)
            freeze(connector, member.address, seconds)
            self.target.delete_pod(member.name, 0)
        else:
            raise ValueError(f"unknown fault mode {mode!r}")
