"""The chart under a real Argo CD: synced from Git, its hook run as PostSync on every sync, drift healed,
scaled out and in through commits, and no perpetual diff after any of it. The tests run in order on one
Application (each step starts from the state the previous one left)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from redis.crc import key_slot

from helm_redis.drill import Router
from helm_redis.nodes import read_views

from .conftest import RELEASE, App, application_manifest, open_redis, plugin_verify

pytestmark = [pytest.mark.gitops, pytest.mark.timeout(1500)]

FULLNAME = f"{RELEASE}-redis-cluster"
KEYS = 2000
PREFIX = "gitops"
STAY_SYNCED_SECONDS = 60


# --- what Argo CD reports -------------------------------------------------------------------------


def _status(app: dict[str, Any]) -> dict[str, Any]:
    return app.get("status", {})


def _operation(app: dict[str, Any]) -> dict[str, Any]:
    return _status(app).get("operationState", {})


def synced_and_healthy(revision: str):
    def check(app: dict[str, Any]) -> bool:
        status = _status(app)
        return (
            status.get("sync", {}).get("status") == "Synced"
            and status.get("sync", {}).get("revision") == revision
            and status.get("health", {}).get("status") == "Healthy"
        )

    return check


def full_syncs(app: dict[str, Any]) -> int:
    """Argo CD records each successful full sync (never a partial one, as self-heal runs) in history."""
    return len(_status(app).get("history", []))


def operation_done(revision: str, full_syncs_before: int | None = None):
    """A full sync to this revision has finished (one after the `full_syncs_before` first ones)."""

    def check(app: dict[str, Any]) -> bool:
        op = _operation(app)
        if op.get("syncResult", {}).get("revision") != revision:
            return False
        if op.get("phase") in ("Failed", "Error"):
            raise AssertionError(f"sync of {revision[:8]} {op.get('phase')}: {op.get('message')}")
        history = _status(app).get("history", [])
        return (
            op.get("phase") == "Succeeded"
            and bool(history)
            and history[-1].get("revision") == revision
            and (full_syncs_before is None or len(history) > full_syncs_before)
        )

    return check


def hook_jobs(app: dict[str, Any], hook_type: str = "PostSync") -> list[dict[str, Any]]:
    resources = _operation(app).get("syncResult", {}).get("resources", [])
    return [r for r in resources if r.get("kind") == "Job" and r.get("hookType") == hook_type]


def assert_hook_succeeded(app: dict[str, Any]) -> None:
    """The hooks of a full sync: before it (PreSync) the Secret of the passwords and the scale-in drain,
    the formation after it."""
    jobs = hook_jobs(app)
    assert [(j["name"], j.get("hookPhase")) for j in jobs] == [(f"{FULLNAME}-init", "Succeeded")], jobs
    presync = hook_jobs(app, "PreSync")
    assert sorted((j["name"], j.get("hookPhase")) for j in presync) == [
        (f"{FULLNAME}-init-scale-in", "Succeeded"),
        (f"{FULLNAME}-init-secret", "Succeeded"),
    ], presync


def assert_stays_synced(app: App, seconds: float = STAY_SYNCED_SECONDS) -> None:
    """No perpetual diff: Synced and Healthy throughout, no new sync operation, while Argo CD keeps
    comparing (its reconciledAt moves on: up.sh sets a full comparison every 30 s)."""
    first = app.get()
    started_at, syncs = _operation(first).get("startedAt"), full_syncs(first)
    reconciled = {_status(first).get("reconciledAt")}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        now = app.get()
        status = _status(now)
        assert status.get("sync", {}).get("status") == "Synced", (
            f"drift: {json.dumps(status.get('resources'))}"
        )
        assert status.get("health", {}).get("status") == "Healthy", status.get("health")
        assert (_operation(now).get("startedAt"), full_syncs(now)) == (started_at, syncs), (
            "Argo CD synced again: a diff came back"
        )
        reconciled.add(status.get("reconciledAt"))
        time.sleep(2)
    assert len(reconciled) > 1, "Argo CD did not compare the application again during the minute"


# --- what Redis says --------------------------------------------------------------------------------


def write_keys(target, count: int = KEYS) -> None:
    router = Router(target.connector, [m.address for m in target.members])
    by_owner: dict[Any, list[str]] = {}
    for i in range(count):
        key = f"{PREFIX}:{i}"
        by_owner.setdefault(router.owner[key_slot(key.encode())], []).append(key)
    for owner, keys in by_owner.items():
        pipe = target.connector.client(owner).pipeline(transaction=False)
        for key in keys:
            pipe.set(key, key)
        pipe.execute()


def lost_keys(target, count: int = KEYS) -> list[str]:
    router = Router(target.connector, [m.address for m in target.members])
    lost = []
    for i in range(count):
        key = f"{PREFIX}:{i}"
        if target.connector.client(router.owner[key_slot(key.encode())]).get(key) != key:
            lost.append(key)
    return lost


def snapshot(target) -> dict[str, Any]:
    """Per pod: node ID, role, master, config epoch, slots, key count; and the cluster's current epoch."""
    views = read_views(target.connector, [m.address for m in target.members])
    nodes = {}
    for member, view in zip(target.members, views, strict=True):
        me = view.myself
        nodes[member.name] = {
            "id": me.node_id,
            "role": "master" if me.is_master else "replica",
            "master": me.master_id,
            "epoch": me.config_epoch,
            "slots": me.slots,
            "keys": view.keys,
        }
    epochs = {view.cluster_info.get("cluster_current_epoch") for view in views}
    return {"nodes": nodes, "current_epoch": epochs}


def pods(app: App) -> dict[str, tuple[str, int]]:
    """Redis pod name -> (uid, restarts): a pod recreated or restarted shows here."""
    items = json.loads(
        app.kubectl(
            "get",
            "pods",
            "-l",
            f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=redis",
            "-o",
            "json",
        ).stdout
    )["items"]
    return {
        p["metadata"]["name"]: (
            p["metadata"]["uid"],
            sum(c.get("restartCount", 0) for c in p.get("status", {}).get("containerStatuses", [])),
        )
        for p in items
    }


def uid(app: App, kind: str, name: str) -> str | None:
    done = app.kubectl("get", kind, name, "-o", "jsonpath={.metadata.uid}", check=False)
    return done.stdout.strip() or None if done.returncode == 0 else None


# --- the journey ------------------------------------------------------------------------------------


def test_application_syncs_healthy_and_the_postsync_hook_forms_the_cluster(app: App) -> None:
    revision = app.source.git("rev-parse", "HEAD")
    started = time.monotonic()
    app.argo.kubectl("apply", "-f", "-", input=json.dumps(application_manifest(app)))
    app.wait("Synced and Healthy", synced_and_healthy(revision))
    app.argo.record("create Application -> Synced+Healthy", time.monotonic() - started)
    done = app.wait("synced with its PostSync hook done", operation_done(revision))
    app.argo.record("create Application -> hook done", time.monotonic() - started)
    assert_hook_succeeded(done)
    # The helm test Pod is a hook of no phase Argo CD knows: never applied.
    applied = _operation(done)["syncResult"]["resources"]
    assert f"{FULLNAME}-test" not in [r["name"] for r in applied if r.get("kind") == "Pod"]
    assert app.kubectl("get", "pod", f"{FULLNAME}-test", check=False).returncode != 0

    target = open_redis(app)
    try:
        plugin_verify(app)
        write_keys(target)
        assert lost_keys(target) == []
    finally:
        target.close()
    app.argo.record("create Application -> verified (+ keys written)", time.monotonic() - started)
    assert_stays_synced(app)


def test_a_second_sync_reruns_the_hook_and_changes_nothing(app: App) -> None:
    target = open_redis(app)
    try:
        before, pods_before = snapshot(target), pods(app)
        previous = app.get()

        # A hard refresh alone: re-rendered from Git, nothing differs, so nothing is synced.
        app.refresh("hard")
        app.wait(
            "hard-refreshed",
            lambda a: "argocd.argoproj.io/refresh" not in a["metadata"].get("annotations", {}),
            timeout=120,
        )
        now = app.get()
        assert _status(now)["sync"]["status"] == "Synced"
        assert _operation(now).get("startedAt") == _operation(previous).get("startedAt")
        assert full_syncs(now) == full_syncs(previous)

        # A harmless commit (an annotation on the access Service): a new sync, and the hook runs again.
        started = time.monotonic()
        revision = app.commit(
            "annotate the access Service", service__annotations={"example.org/revision": "2"}
        )
        app.refresh("hard")
        app.wait("Synced and Healthy at the new commit", synced_and_healthy(revision))
        app.argo.record("commit -> Synced+Healthy", time.monotonic() - started)
        done = app.wait("synced with the hook re-run", operation_done(revision, full_syncs(previous)))
        app.argo.record("commit -> hook done", time.monotonic() - started)
        assert_hook_succeeded(done)

        annotations = json.loads(app.kubectl("get", "service", FULLNAME, "-o", "json").stdout)["metadata"]
        assert annotations.get("annotations", {}).get("example.org/revision") == "2"
        assert snapshot(target) == before, "the re-run hook changed the cluster"
        assert pods(app) == pods_before, "pods were recreated or restarted"
        assert lost_keys(target) == []
        plugin_verify(app)
    finally:
        target.close()
    assert_stays_synced(app)


def test_self_heal_restores_the_deleted_service_and_configmap_while_redis_serves(app: App) -> None:
    target = open_redis(app)
    try:
        pods_before = pods(app)
        previous = app.get()
        old = {kind: uid(app, kind, FULLNAME) for kind in ("service", "configmap")}
        assert all(old.values()), old

        started = time.monotonic()
        app.kubectl("delete", "service", FULLNAME, "--wait=false")
        app.kubectl("delete", "configmap", FULLNAME, "--wait=false")
        failed_reads = reads = 0
        router = Router(target.connector, [m.address for m in target.members])
        deadline = time.monotonic() + 300
        while True:
            now = {kind: uid(app, kind, FULLNAME) for kind in old}
            if all(now[k] and now[k] != old[k] for k in old):
                break
            assert time.monotonic() < deadline, f"not restored within 300 s: {now}"
            key = f"{PREFIX}:{reads % KEYS}"
            reads += 1
            try:
                if target.connector.client(router.owner[key_slot(key.encode())]).get(key) != key:
                    failed_reads += 1
            except Exception:
                failed_reads += 1
            time.sleep(0.2)
        app.argo.record("delete Service+ConfigMap -> restored by self-heal", time.monotonic() - started)
        assert failed_reads == 0, f"{failed_reads} of {reads} reads failed while Argo CD healed"

        healed = app.wait(
            "healed (Synced and Healthy)", synced_and_healthy(_status(previous)["sync"]["revision"])
        )
        # Self-heal syncs only what is out of sync (partial syncs, one per detection): no full sync, so
        # no hook runs, and none is needed.
        assert _operation(healed).get("startedAt") != _operation(previous).get("startedAt")
        assert full_syncs(healed) == full_syncs(previous)
        synced = {(r["kind"], r["name"]) for r in _operation(healed)["syncResult"]["resources"]}
        assert synced <= {("ConfigMap", FULLNAME), ("Service", FULLNAME)}, synced
        assert pods(app) == pods_before, "pods were recreated or restarted"
        assert lost_keys(target) == []
        plugin_verify(app)
    finally:
        target.close()
    assert_stays_synced(app)


def test_scale_out_through_git_adds_a_master_and_a_replica_without_losing_keys(app: App) -> None:
    previous = full_syncs(app.get())
    started = time.monotonic()
    revision = app.commit("scale out: 4 masters", cluster__masters=4)
    app.refresh("hard")
    app.wait("Synced and Healthy with 8 pods", synced_and_healthy(revision), timeout=900)
    app.argo.record("scale-out commit -> Synced+Healthy", time.monotonic() - started)
    done = app.wait("scale-out sync with its hook done", operation_done(revision, previous), timeout=900)
    app.argo.record("scale-out commit -> hook done", time.monotonic() - started)
    assert_hook_succeeded(done)

    target = open_redis(app)
    try:
        assert len(target.members) == 8, [m.name for m in target.members]
        plugin_verify(app)
        app.argo.record("scale-out commit -> verified", time.monotonic() - started)
        state = snapshot(target)
        masters = {n: s for n, s in state["nodes"].items() if s["role"] == "master"}
        assert len(masters) == 4 and all(s["slots"] for s in masters.values()), masters
        assert lost_keys(target) == []
        assert sum(s["keys"] for s in masters.values()) == KEYS
    finally:
        target.close()
    assert_stays_synced(app)


def test_scale_in_through_git_drains_before_the_pods_go_and_forgets_them(app: App) -> None:
    previous = full_syncs(app.get())
    started = time.monotonic()
    revision = app.commit("scale in: 3 masters", cluster__masters=3)
    app.refresh("hard")
    app.wait("Synced and Healthy with 6 pods", synced_and_healthy(revision), timeout=900)
    app.argo.record("scale-in commit -> Synced+Healthy", time.monotonic() - started)
    done = app.wait("scale-in sync with its hooks done", operation_done(revision, previous), timeout=900)
    app.argo.record("scale-in commit -> hooks done", time.monotonic() - started)
    assert_hook_succeeded(done)  # PreSync drained pods 6 and 7, PostSync forgot them

    target = open_redis(app)
    try:
        assert len(target.members) == 6, [m.name for m in target.members]
        plugin_verify(app)  # fails while any node still lists a departed node
        app.argo.record("scale-in commit -> verified", time.monotonic() - started)
        state = snapshot(target)
        masters = {n: s for n, s in state["nodes"].items() if s["role"] == "master"}
        assert len(masters) == 3 and all(s["slots"] for s in masters.values()), masters
        assert lost_keys(target) == []
        assert sum(s["keys"] for s in masters.values()) == KEYS
    finally:
        target.close()
    assert_stays_synced(app)


def test_deleting_the_application_removes_its_resources_but_keeps_the_volumes(app: App) -> None:
    """The static PVs carry helm.sh/resource-policy: keep, which Argo CD's cascade deletion honours."""
    pvs = [f"persistentvolume/{app.namespace}-data-{FULLNAME}-{i}" for i in range(8)]
    app.argo.kubectl(
        "-n", app.argo.namespace, "delete", "applications.argoproj.io", app.name, "--timeout=300s"
    )
    assert app.kubectl("get", "statefulset", FULLNAME, check=False).returncode != 0
    kept = app.argo.kubectl("get", *pvs, "-o", "name").stdout.split()
    assert kept == pvs
