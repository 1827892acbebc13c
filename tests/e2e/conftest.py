"""The Kubernetes journey runs on a real cluster: the local one that `make k8s-up` started, or the one that
RCH_TEST_KUBECONFIG + RCH_TEST_CONTEXT name (ci/select-cluster.sh via tests/kube.py; never KUBECONFIG).
Nothing here is simulated: without a reachable cluster these tests fail with the reason, never skipped."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from redis.crc import key_slot

from helm_redis.drill import LoadRun, Router
from helm_redis.nodes import NodeAddress, read_views
from helm_redis.release import ReleaseTarget, open_release
from tests.cli import HELM_REDIS
from tests.kube import ROOT, cluster_env, image_values


@dataclass
class Cluster:
    namespace: str
    env: dict[str, str]
    values: list[str]
    timings: dict[str, float] = field(default_factory=dict)

    def run(
        self, *args: str, check: bool = True, timeout: float = 900, **kw
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=timeout, **kw)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done

    def helm(self, *args: str, **kw) -> subprocess.CompletedProcess[str]:
        return self.run("helm", "--namespace", self.namespace, *args, **kw)

    def kubectl(self, *args: str, **kw) -> subprocess.CompletedProcess[str]:
        return self.run("kubectl", "--namespace", self.namespace, *args, **kw)

    def plugin(self, *args: str, **kw) -> subprocess.CompletedProcess[str]:
        return self.helm("redis", *args, **kw)

    def plugin_json(self, *args: str) -> tuple[int, dict]:
        done = self.plugin(*args, "--output", "json", check=False)
        try:
            return done.returncode, json.loads(done.stdout)
        except json.JSONDecodeError:
            raise AssertionError(
                f"helm redis {' '.join(args)}: no JSON ({done.returncode}):\n{done.stderr}"
            ) from None

    def timed(self, name: str, started: float) -> None:
        self.timings[name] = time.monotonic() - started
        print(f"\n[e2e] {name}: {self.timings[name]:.1f} s")

    def helm_redis(self, *args: str, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
        """The console script the plugin's shim runs, with Helm's plugin environment for this namespace."""
        return subprocess.run(
            [HELM_REDIS, *args],
            env={**self.env, "HELM_NAMESPACE": self.namespace},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def wait_verified(self, release: str, timeout: float, *extra: str) -> dict:
        """Poll verify until it passes; while pods restart it may also exit 2 (a pod does not answer)."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            done = self.helm_redis("verify", release, "--output", "json", *extra, timeout=120)
            if done.returncode == 0:
                return json.loads(done.stdout)
            last = done.stdout[-2000:] or done.stderr[-500:]
            time.sleep(3)
        raise AssertionError(f"{release} not verified within {timeout} s: {last}")

    def drill(self, release: str, mode: str, *extra: str, verified_first: bool = True) -> dict:
        """Run a drill (on a verified cluster, unless told otherwise); the JSON report, its exit code as
        `exit_code` and its progress lines as `progress`."""
        if verified_first:
            self.wait_verified(release, 300)
        started = time.monotonic()
        done = self.helm_redis("drill", release, "--mode", mode, "--output", "json", *extra)
        self.timed(f"{mode} drill", started)
        try:
            report = json.loads(done.stdout)
        except json.JSONDecodeError:
            raise AssertionError(
                f"drill --mode {mode}: no JSON ({done.returncode}):\n{done.stderr}"
            ) from None
        report["exit_code"] = done.returncode
        report["progress"] = done.stderr
        gaps = ", ".join(f"{s['shard']} {s['longest_gap_seconds']:.3f} s" for s in report["shards"])
        print(
            f"\n[drill e2e] {mode}: exit {done.returncode}, outcome {report['outcome']!r}, promotion "
            f"{report['promotion_seconds']} s, manual failovers {report['manual_failovers']}, node timeout "
            f"{report['node_timeout_seconds']} s; longest write gap per shard: {gaps}; "
            f"writes {report['writes']}; timeline {[(e['event'], e['seconds']) for e in report['timeline']]}"
        )
        for handover in report["handovers"]:
            print(f"[drill e2e]   handover {handover}")
        return report

    def role(self, release: str, pod: str) -> str:
        target = self.open(release)
        try:
            member = next(m for m in target.members if m.name == pod)
            view = read_views(target.connector, [member.address])[0]
            return "master" if view.myself.is_master else "replica"
        finally:
            target.close()

    def open(self, release: str) -> ReleaseTarget:
        return open_release(release, self.namespace, kubeconfig=self.env.get("KUBECONFIG"))

    @contextlib.contextmanager
    def write_load(self, release: str) -> Iterator[dict]:
        """The drill's write load (SET + WAIT for every replica, per shard) while the block runs; yields the
        result it fills in: per-shard longest unwritable time, acknowledged writes and lost ones."""
        target = self.open(release)
        result: dict = {}
        try:
            run = LoadRun.on(target, max_writes=3_000_000, max_seconds=1500).start()
            try:
                yield result
            finally:
                outcome = run.stop()
                result.update(
                    unwritable={name: round(gap, 3) for name, gap in outcome.longest_gaps.items()},
                    acknowledged=outcome.acknowledged,
                    lost=outcome.lost_acknowledged,
                    unverified=outcome.unverified,
                    exhausted=outcome.exhausted,
                )
        finally:
            target.close()

    def write_keys(self, release: str, keys: dict[str, str]) -> None:
        """SET every key on its slot's master, pipelined per master."""
        target = self.open(release)
        try:
            for master, owned in _by_master(target, keys).items():
                pipe = target.connector.client(master).pipeline(transaction=False)
                for key in owned:
                    pipe.set(key, keys[key])
                pipe.execute()
        finally:
            target.close()

    def missing_keys(self, release: str, keys: dict[str, str]) -> list[str]:
        """Keys not there with their value, read from each slot's master now (a slot without one: missing)."""
        target = self.open(release)
        try:
            by_master = _by_master(target, keys)
            missing = list(by_master.pop(None, []))
            for master, owned in by_master.items():
                pipe = target.connector.client(master).pipeline(transaction=False)
                for key in owned:
                    pipe.get(key)
                missing += [k for k, v in zip(owned, pipe.execute(), strict=True) if v != keys[k]]
            return sorted(missing)
        finally:
            target.close()

    def rollout_finished(self, statefulset: str, timeout_seconds: int = 900) -> None:
        """`kubectl rollout status` of the StatefulSet, bounded."""
        self.kubectl(
            "rollout", "status", f"statefulset/{statefulset}", f"--timeout={timeout_seconds}s",
            timeout=timeout_seconds + 60,
        )  # fmt: skip

    def node_ids(self, release: str) -> dict[str, str]:
        """pod -> the node ID it reports for itself."""
        target = open_release(release, self.namespace, kubeconfig=self.env.get("KUBECONFIG"))
        try:
            views = read_views(target.connector, [m.address for m in target.members])
            return {m.name: v.node_id for m, v in zip(target.members, views, strict=True)}
        finally:
            target.close()


def assert_drill_ok(report: dict) -> None:
    assert report["exit_code"] == 0 and report["ok"], (report["problems"], report["progress"][-3000:])
    assert report["writes"]["lost_acknowledged"] == 0
    assert report["writes"]["acknowledged"] > 0


def assert_writable_throughout(
    cluster: Cluster, release: str, what: str, result: dict, ids: dict[str, str], max_unwritable: float
) -> None:
    """What a write load (Cluster.write_load) saw through a rolling operation: no shard without a writable
    master for `max_unwritable` seconds or more, no acknowledged write lost, every node ID kept."""
    print(
        f"\n[e2e] {what}: longest time without a writable master per shard "
        f"{result['unwritable']} s; acknowledged writes {result['acknowledged']}, lost {result['lost']}"
    )
    assert result["acknowledged"] > 0
    assert result["lost"] == 0 and result["unverified"] == 0
    assert not result["exhausted"], "the load stopped before the operation ended: its gaps went unmeasured"
    assert max(result["unwritable"].values()) < max_unwritable, result["unwritable"]
    assert cluster.node_ids(release) == ids


def _by_master(target: ReleaseTarget, keys: Iterable[str]) -> dict[NodeAddress | None, list[str]]:
    """The keys grouped by the master that serves their slot now (None: a slot no master serves)."""
    router = Router(target.connector, [m.address for m in target.members])
    grouped: dict[NodeAddress | None, list[str]] = {}
    for key in keys:
        grouped.setdefault(router.owner.get(key_slot(key.encode())), []).append(key)
    return grouped


# Where the e2e releases keep their hostPath volumes (on the node; the local cluster's node is this machine).
VOLUME_ROOT = Path("/var/lib/redis-cluster-e2e")


@pytest.fixture(scope="session", autouse=True)
def _remove_volume_data() -> Iterator[None]:
    """The releases' PVs are deleted with their namespaces, but a hostPath PV leaves its directory behind:
    without this, every run would leave gigabytes (the rollout test alone writes 690 MB per pod) until the
    node's disk fills and the kubelet stops starting pods (DiskPressure). At the end of the session the
    directories this session created under VOLUME_ROOT are removed, where they are local (the local
    cluster); on another cluster nothing here is touched."""
    before = set(VOLUME_ROOT.iterdir()) if VOLUME_ROOT.is_dir() else set()
    yield
    if VOLUME_ROOT.is_dir():
        for path in set(VOLUME_ROOT.iterdir()) - before:
            shutil.rmtree(path, ignore_errors=True)


def chart_values(env: dict[str, str], run_id: str) -> list[str]:
    """Values flags for the cluster at hand: its site values (RCH_CLUSTER_VALUES, a values file: the local
    cluster's DNS and API server are host processes, which the NetworkPolicies must name), its images when
    it cannot run the defaults, hostPath volumes on its first node."""
    node = subprocess.run(
        ["kubectl", "get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    site = env.get("RCH_CLUSTER_VALUES")
    values = ["--values", site] if site else []
    for key, value in image_values(env).items():
        values += ["--set", f"{key}={value}"]
    values += [
        "--set",
        "persistence.type=hostPath",
        "--set",
        f"persistence.hostPath.node={node}",
        "--set",
        # Per release: a release installed later in the run must not find an earlier one's kept volumes.
        f"persistence.hostPath.path={VOLUME_ROOT}/{run_id}/{{{{release}}}}/{{{{ordinal}}}}",
        "--set",
        "volumePermissions.enabled=true",
    ]
    return values


def remove(cluster: Cluster, releases: list[str], helm_home: Path) -> None:
    """Uninstall the releases, delete the namespace and this namespace's PVs (kept by the chart)."""
    print("\n[e2e] timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in cluster.timings.items()))
    for release in releases:
        with contextlib.suppress(OSError, subprocess.SubprocessError):  # the namespace goes in any case
            cluster.helm("uninstall", release, "--wait", "--timeout", "5m", check=False)
    cluster.kubectl("delete", "namespace", cluster.namespace, "--wait=true", "--timeout=300s", check=False)
    ours = [
        pv
        for pv in cluster.run("kubectl", "get", "pv", "-o", "name", check=False).stdout.split()
        if pv.startswith(f"persistentvolume/{cluster.namespace}-")
    ]
    if ours:
        cluster.run("kubectl", "delete", "--wait=false", *ours, check=False)
    shutil.rmtree(helm_home, ignore_errors=True)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    env, helm_home = cluster_env("rch-e2e-helm-")
    run_id = uuid.uuid4().hex[:6]
    cluster = Cluster(f"rch-e2e-{run_id}", env, chart_values(env, run_id))
    cluster.run("kubectl", "create", "namespace", cluster.namespace)
    cluster.run("helm", "plugin", "install", str(ROOT / "helm_plugin"), timeout=600)
    try:
        yield cluster
    finally:
        remove(cluster, ["redis"], helm_home)
