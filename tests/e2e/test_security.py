"""A default install is authenticated, and its passwords appear nowhere they could leak: not in any pod
spec, not in redis-server's argv or environment, not in a log of any pod of the release (the hook Jobs'
included, followed while they run), not in NOTES."""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import time
import uuid

import pytest
import redis

from tests.kube import CHART

from .conftest import Cluster

pytestmark = pytest.mark.e2e
RELEASE = "secure"


class PodLogs:
    """Follows the log of every pod of the release from the moment it appears (hook pods are deleted as
    soon as they succeed): one follower thread per pod, retrying while its containers have not started,
    everything bounded by `seconds`."""

    def __init__(self, cluster: Cluster, seconds: float) -> None:
        self.cluster, self.deadline = cluster, time.monotonic() + seconds
        self.logs: dict[str, str] = {}
        self.threads: dict[str, threading.Thread] = {}
        self.stop = threading.Event()
        self.watcher = threading.Thread(target=self._watch, daemon=True)

    def _follow(self, name: str) -> None:
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            done = subprocess.run(
                ["kubectl", "--namespace", self.cluster.namespace, "logs", "-f", "--all-containers", name],
                env=self.cluster.env,
                capture_output=True,
                text=True,
                timeout=max(1.0, self.deadline - time.monotonic()),
                check=False,
            )
            if "waiting to start" not in done.stderr and "ContainerCreating" not in done.stderr:
                self.logs[name] = done.stdout + done.stderr
                return
            time.sleep(0.2)

    def _watch(self) -> None:
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            names = self.cluster.kubectl("get", "pods", "-o", "name", check=False).stdout.split()
            for name in names:
                if name.startswith(f"pod/{RELEASE}") and name not in self.threads:
                    self.threads[name] = threading.Thread(target=self._follow, args=(name,), daemon=True)
                    self.threads[name].start()
            time.sleep(0.3)

    def __enter__(self) -> PodLogs:
        self.watcher.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.watcher.join(timeout=10)

    def text(self) -> dict[str, str]:
        """Every finished pod's whole log; running pods' logs as they are now."""
        for name, thread in self.threads.items():
            if name not in self.logs:
                self.logs[name] = self.cluster.kubectl("logs", "--all-containers", name, check=False).stdout
            thread.join(timeout=1)
        return self.logs


def _secret(cluster: Cluster, name: str) -> dict[str, str]:
    data = json.loads(cluster.kubectl("get", "secret", name, "-o", "json").stdout)["data"]
    return {key: base64.b64decode(value).decode() for key, value in data.items()}


def _in_pod(cluster: Cluster, script: str, stdin: str = "") -> str:
    """A shell script in the first Redis pod; secrets travel on stdin, never in argv."""
    done = cluster.kubectl(
        "exec", "-i", f"{RELEASE}-redis-cluster-0", "-c", "redis", "--", "sh", "-c", script, input=stdin
    )
    return done.stdout.strip()


def test_a_default_install_is_authenticated_and_leaks_no_password(cluster: Cluster):
    started = time.monotonic()
    with PodLogs(cluster, seconds=600) as logs:
        cluster.helm(
            "install",
            RELEASE,
            str(CHART),
            *cluster.values,
            "--set",
            "cluster.replicasPerMaster=0",
            "--wait",
            "--timeout",
            "300s",
        )
        cluster.timed("secure install (auth by default)", started)
        passwords = _secret(cluster, f"{RELEASE}-redis-cluster-auth")
        assert set(passwords) >= {"admin-password", "replication-password", "app-password"}
        secrets = [p for value in passwords.values() for p in value.split()]
        assert all(len(p) >= 32 for p in secrets)

        # Refused without a login and with a wrong password; the application user gets in.
        assert "NOAUTH" in _in_pod(cluster, "redis-cli ping 2>&1")
        assert "WRONGPASS" in _in_pod(
            cluster, 'REDISCLI_AUTH="$(cat)" redis-cli --user app ping 2>&1', "wrong"
        )
        app = passwords["app-password"].split()[0]
        assert _in_pod(cluster, 'REDISCLI_AUTH="$(cat)" redis-cli --user app ping 2>&1', app) == "PONG"

        # Nowhere to be read: pod specs of every object, redis-server's argv and environment, NOTES.
        specs = cluster.kubectl("get", "pods,statefulsets,jobs,deployments,configmaps", "-o", "yaml").stdout
        proc = _in_pod(cluster, "tr '\\0' ' ' < /proc/1/cmdline; echo; tr '\\0' '\\n' < /proc/1/environ")
        assert proc.startswith("redis-server")
        notes = cluster.helm("get", "notes", RELEASE).stdout
        done = cluster.helm_redis("verify", RELEASE, "--output", "json")
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr
        checks = {c["name"]: c["status"] for c in json.loads(done.stdout)["checks"]}
        assert checks["auth-required"] == "pass" and checks["default-user-off"] == "pass"
        assert checks["network-policy"] == "pass"
        # Every pod's log, hook Jobs included (a rotation re-run of the hook too).
        cluster.helm("upgrade", RELEASE, str(CHART), "--reuse-values", "--wait", "--timeout", "300s")
    pod_logs = logs.text()
    secret_logs = [text for name, text in pod_logs.items() if "-init-secret-" in name]
    assert any("created Secret" in text for text in secret_logs), secret_logs
    init_logs = {
        name: text
        for name, text in pod_logs.items()
        if "-init-" in name and "scale-in" not in name and "secret" not in name
    }
    assert init_logs and all("ACL users" in text for text in init_logs.values()), init_logs
    for where, text in [
        ("pod specs", specs),
        ("/proc/1", proc),
        ("NOTES", notes),
        ("verify", done.stdout),
        *pod_logs.items(),
    ]:
        for secret in secrets:
            assert secret not in text, f"a password appears in {where}"
    cluster.helm("uninstall", RELEASE, "--wait", "--timeout", "5m")
    # The generated Secret outlives the release: a reinstall finds its data and its passwords.
    assert _secret(cluster, f"{RELEASE}-redis-cluster-auth") == passwords


def test_switching_authentication_on_for_a_running_release_keeps_it_serving(cluster: Cluster):
    """The default changed: a release installed open is upgraded to authentication. The pre-upgrade Job
    gives the running open nodes their users first, so the rolling restart finds every master accepting
    its replicas' login; afterwards the cluster is complete and refuses a connection without a login."""
    release = "opened"
    started = time.monotonic()
    cluster.helm(
        "install",
        release,
        str(CHART),
        *cluster.values,
        "--set",
        "auth.enabled=false",
        "--wait",
        "--timeout",
        "300s",
    )
    cluster.wait_verified(release, 240)
    data = "REDISCLI_AUTH= redis-cli -c set before-auth kept"
    cluster.kubectl("exec", f"{release}-redis-cluster-0", "-c", "redis", "--", "sh", "-c", data)
    cluster.timed("open install", started)
    started = time.monotonic()
    cluster.helm("upgrade", release, str(CHART), *cluster.values, "--wait", "--timeout", "600s")
    report = cluster.wait_verified(release, 300)
    cluster.timed("upgrade to authentication (rolling)", started)
    checks = {c["name"]: c["status"] for c in report["checks"]}
    assert checks["auth-required"] == "pass" and checks["default-user-off"] == "pass"
    refused = cluster.kubectl(
        "exec", f"{release}-redis-cluster-0", "-c", "redis", "--", "sh", "-c", "redis-cli ping 2>&1"
    ).stdout
    assert "NOAUTH" in refused
    admin = _secret(cluster, f"{release}-redis-cluster-auth")["admin-password"].split()[0]
    found = cluster.kubectl(
        "exec",
        "-i",
        f"{release}-redis-cluster-0",
        "-c",
        "redis",
        "--",
        "sh",
        "-c",
        'REDISCLI_AUTH="$(cat)" redis-cli --user admin -c get before-auth',
        input=admin,
    ).stdout.strip()
    assert found == "kept"
    cluster.helm("uninstall", release, "--wait", "--timeout", "5m")


def _set_secret_key(cluster: Cluster, name: str, key: str, value: str) -> None:
    """Replace one key of a Secret; the value travels on stdin (a patch file), never in argv."""
    patch = json.dumps({"data": {key: base64.b64encode(value.encode()).decode()}})
    cluster.kubectl("patch", "secret", name, "--type", "merge", "--patch-file", "/dev/stdin", input=patch)


def test_password_rotation_under_write_load_fails_no_authenticated_write(cluster: Cluster):
    """The README's rotation, step by step, while a client of the application user writes to every master
    and logs in afresh for every round with the password it uses at that moment."""
    from helm_redis.credentials import Credentials
    from helm_redis.nodes import Connector, read_views
    from helm_redis.release import open_release
    from helm_redis.verify import key_for_slots

    release, secret = "rotate", "rotate-redis-cluster-auth"
    cluster.helm(
        "install",
        release,
        str(CHART),
        *cluster.values,
        "--set",
        "cluster.replicasPerMaster=0",
        "--wait",
        "--timeout",
        "300s",
    )
    cluster.wait_verified(release, 240)
    old = _secret(cluster, secret)["app-password"].strip()
    new = "rotated-" + base64.b64encode(uuid.uuid4().bytes).decode().strip("=").replace("/", "_")
    target = open_release(release, cluster.namespace, kubeconfig=cluster.env.get("KUBECONFIG"))
    views = read_views(target.connector, [m.address for m in target.members])
    masters = [
        (m.address, key_for_slots(v.myself.slots, "rotation:"))
        for m, v in zip(target.members, views, strict=True)
        if v.myself.slots
    ]
    using = {"password": old}
    rounds, failures = [0], []
    stop = threading.Event()

    def writer() -> None:
        deadline = time.monotonic() + 600
        while not stop.is_set() and time.monotonic() < deadline:
            connector = Connector(Credentials("app", (using["password"],)), target.connector.address_map)
            try:
                for address, key in masters:
                    connector.client(address).set(key, rounds[0])
                rounds[0] += 1
            except Exception as error:  # every failure counts, whatever its kind
                failures.append(type(error).__name__)
            finally:
                connector.close()
            time.sleep(0.05)

    def files_have(lines: int) -> bool:
        return all(
            cluster.kubectl(
                "exec",
                pod.name,
                "-c",
                "redis",
                "--",
                "grep",
                "-c",
                ".",
                "/etc/redis-auth/app-password",
                check=False,
            ).stdout.strip()
            == str(lines)
            for pod in target.pods
        )

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    started = time.monotonic()
    try:
        _set_secret_key(cluster, secret, "app-password", f"{old}\n{new}\n")  # 1: the new one beside
        cluster.helm("upgrade", release, str(CHART), "--reuse-values", "--wait", "--timeout", "300s")  # 2
        using["password"] = new  # 3: the clients move
        deadline = time.monotonic() + 150
        while not files_have(2):  # the kubelet's refresh of the mounted Secret, as the README says
            assert time.monotonic() < deadline, "the mounted Secret was not refreshed in 150 s"
            time.sleep(5)
        _set_secret_key(cluster, secret, "app-password", f"{new}\n")  # 4: the old one goes
        cluster.helm("upgrade", release, str(CHART), "--reuse-values", "--wait", "--timeout", "300s")  # 5
        time.sleep(2)
    finally:
        stop.set()
        thread.join(timeout=60)
    cluster.timed(f"password rotation under write load ({rounds[0]} rounds)", started)
    print(f"[e2e] rotation: {rounds[0]} rounds of writes to {len(masters)} masters, {len(failures)} failed")
    try:
        assert rounds[0] >= 20
        assert failures == []
        refused = Connector(Credentials("app", (old,)), target.connector.address_map)
        with pytest.raises(redis.AuthenticationError):
            refused.client(masters[0][0]).ping()
        refused.close()
    finally:
        target.close()
    cluster.helm("uninstall", release, "--wait", "--timeout", "5m")
