"""What every scenario in charts/redis-cluster/ci must render, object by object.

Each scenario's values file is rendered through pyhelm3 (`helm template`, Helm 4) in namespace
redis-ns as release "redis". The first tests hold for every scenario; the rest state what one
scenario is for.
"""

from __future__ import annotations

from collections import Counter

import pytest
import yaml

from .chartlib import (
    CHART,
    NAMESPACE,
    RELEASE,
    SCENARIOS,
    container,
    env_of,
    hooks,
    images_of,
    labels_match,
    merged_values,
    of_kind,
    one,
    scenario_values,
)

CHART_META = yaml.safe_load((CHART / "Chart.yaml").read_text())


def tools_image(values: dict) -> str:
    """The tools image a render runs: its tag defaults to the chart's appVersion."""
    image = values["tools"]["image"]
    return f"{image['repository']}:{image['tag'] or CHART_META['appVersion']}"


pytestmark = pytest.mark.chart

BASE = Counter(
    ConfigMap=2,
    Service=2,
    StatefulSet=1,
    PodDisruptionBudget=1,
    ServiceAccount=4,  # Redis, hook, reconciler, failover controller
    Role=3,  # hook, reconciler, failover controller
    RoleBinding=3,
    Job=3,  # pre-install/pre-upgrade Secret, pre-upgrade scale-in, post-install/post-upgrade init
    Deployment=2,  # reconciler, failover controller
    Pod=1,
    NetworkPolicy=3,  # Redis pods, tools, test pod
)
# Object kinds and counts per scenario: a new scenario file must say what it renders. Never a Secret: the
# passwords' Secret is made by the pre-install hook (or by the user), never rendered.
EXPECTED_KINDS = {
    "defaults": BASE,
    "nfs": BASE + Counter(PersistentVolume=6, StorageClass=1),
    "hostpath": BASE + Counter(PersistentVolume=6, StorageClass=1),
    "storageclass": BASE,
    "none": BASE,
    "auth-existing-secret": BASE,
    "auth-disabled": BASE - Counter(Job=1),  # no Secret Job
    "nodeport": BASE,
    "loadbalancer": BASE,
    "5-masters-2-replicas": BASE,
    "hard-anti-affinity": BASE,
    "network-policy": BASE,
    "tls": BASE,
    "tls-cert-manager": BASE + Counter(Certificate=1),
    "valkey": BASE,
    "hook-disabled": Counter(
        ConfigMap=2, Service=2, StatefulSet=1, PodDisruptionBudget=1, Pod=1, NetworkPolicy=2
    ),
}
REQUIRED_SCENARIOS = {
    "defaults",
    "nfs",
    "hostpath",
    "storageclass",
    "auth-existing-secret",
    "auth-disabled",
    "nodeport",
    "5-masters-2-replicas",
    "hard-anti-affinity",
    "network-policy",
}
FULL = "redis-redis-cluster"
HEADLESS = f"{FULL}-headless"
SELECTOR = {"app.kubernetes.io/name": "redis-cluster", "app.kubernetes.io/instance": RELEASE}
REDIS_SELECTOR = {**SELECTOR, "app.kubernetes.io/component": "redis"}
AUTH_DIR = "/etc/redis-auth"
# What every client of the nodes gets with auth.enabled: a user and a file, never a password.
AUTH_ENV = {"REDIS_USERNAME": "admin", "REDIS_PASSWORD_FILE": f"{AUTH_DIR}/admin-password"}
AUTH_MOUNT = {"name": "auth", "mountPath": AUTH_DIR, "readOnly": True}
TLS_DIR = "/etc/redis-tls"
# With tls.enabled: the TLS Secret mounted whole (never a subPath: it would never see a renewal).
TLS_MOUNT = {"name": "tls", "mountPath": TLS_DIR, "readOnly": True}


def tls_env(values) -> dict:
    """What every client of the nodes gets with tls.enabled: the files' directory and the name to verify."""
    return {
        "REDIS_TLS_DIR": TLS_DIR,
        "REDIS_TLS_SERVER_NAME": f"{FULL}.{NAMESPACE}.svc.{values['clusterDomain']}",
    }


def tls_secret_name(values) -> str:
    return values["tls"]["existingSecret"] or f"{FULL}-tls"


def tls_volume(values, optional=False) -> dict:
    secret = {"secretName": tls_secret_name(values), "defaultMode": 0o440}
    if optional:
        secret["optional"] = True
    return {"name": "tls", "secret": secret}


def sts_of(objs):
    return one(objs, "StatefulSet")


def by_component(objs, kind, component):
    found = [
        o for o in of_kind(objs, kind) if o["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    assert len(found) == 1, f"expected one {kind} of component {component}, found {len(found)}"
    return found[0]


def init_job(objs):
    return by_component(objs, "Job", "cluster-init")


def scale_in_job(objs):
    return by_component(objs, "Job", "cluster-scale-in")


def secret_job(objs):
    return by_component(objs, "Job", "auth-secret")


def secret_name(values) -> str:
    return values["auth"].get("existingSecret") or f"{FULL}-auth"


def auth_volume(values, optional=False) -> dict:
    secret = {"secretName": secret_name(values), "defaultMode": 0o440}
    if optional:
        secret["optional"] = True
    return {"name": "auth", "secret": secret}


def reconciler_of(objs):
    return by_component(objs, "Deployment", "reconciler")


def tool(workload) -> dict:
    """The one container of a hook Job or of the reconciler."""
    (c,) = workload["spec"]["template"]["spec"]["containers"]
    return c


def tools_env(objs, values) -> dict:
    """The env every helm-redis tool gets (hook Jobs, reconciler): the contract with the Python side."""
    sts = sts_of(objs)
    cluster = values["cluster"]
    env = {
        "REDIS_CLUSTER_STATEFULSET": sts["metadata"]["name"],
        "REDIS_CLUSTER_SERVICE": sts["spec"]["serviceName"],
        "REDIS_CLUSTER_NAMESPACE": {"fieldRef": {"fieldPath": "metadata.namespace"}},
        "REDIS_CLUSTER_DOMAIN": values["clusterDomain"],
        "REDIS_CLUSTER_PORT": str(values["redis"]["port"]),
        "REDIS_CLUSTER_PODS": str(sts["spec"]["replicas"]),
        "REDIS_CLUSTER_MASTERS": str(cluster["masters"]),
        "REDIS_CLUSTER_REPLICAS_PER_MASTER": str(cluster["replicasPerMaster"]),
        "REDIS_CLUSTER_POD_SELECTOR": ",".join(f"{k}={v}" for k, v in sorted(REDIS_SELECTOR.items())),
        "REDIS_CLUSTER_WAIT_TIMEOUT": str(values["hook"]["waitTimeoutSeconds"]),
        "REDIS_CLUSTER_NODE_TIMEOUT": str(values["cluster"]["nodeTimeout"]),
    }
    limit = values["redis"].get("resources", {}).get("limits", {}).get("memory")
    if limit:
        env["REDIS_CLUSTER_MEMORY_LIMIT"] = limit
    if values["auth"]["enabled"]:
        env.update(AUTH_ENV)
    if values["tls"]["enabled"]:
        env.update(tls_env(values))
    return env


def tool_pods(objs) -> list[dict]:
    """Pod templates of the hook Jobs (the Secret Job too) and the reconciler."""
    return [w["spec"]["template"] for w in of_kind(objs, "Job") + of_kind(objs, "Deployment")]


def redis_of(objs):
    return container(sts_of(objs)["spec"]["template"]["spec"], "redis")


def redis_conf(objs, name=FULL) -> list[str]:
    return one(objs, "ConfigMap", name)["data"]["redis.conf"].splitlines()


# --- every scenario --------------------------------------------------------------------------------


def test_the_required_scenarios_exist_and_each_states_its_kinds():
    assert set(SCENARIOS) >= REQUIRED_SCENARIOS
    assert set(SCENARIOS) == set(EXPECTED_KINDS), "each ci/*-values.yaml needs its expected kinds here"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_renders_exactly_the_expected_kinds(rendered, scenario):
    assert Counter(o["kind"] for o in rendered(scenario)) == EXPECTED_KINDS[scenario]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_statefulset_runs_masters_times_one_plus_replicas_pods_in_parallel(rendered, scenario):
    values = merged_values(scenario_values(scenario))
    sts = sts_of(rendered(scenario))
    cluster = values["cluster"]
    assert sts["spec"]["replicas"] == cluster["masters"] * (1 + cluster["replicasPerMaster"])
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    assert sts["spec"]["serviceName"].endswith("-headless")
    # The selector can never change: name and instance only, no version.
    assert sts["spec"]["selector"] == {
        "matchLabels": {
            "app.kubernetes.io/name": "redis-cluster",
            "app.kubernetes.io/instance": RELEASE,
        }
    }
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    assert pod_labels["app.kubernetes.io/component"] == "redis"
    assert "helm.sh/chart" not in pod_labels and "app.kubernetes.io/version" not in pod_labels


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_services_select_only_redis_pods_never_hook_or_test_pods(rendered, scenario):
    objs = rendered(scenario)
    sts = sts_of(objs)
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    other_pods = [one(objs, "Pod")["metadata"]["labels"]]
    other_pods += [pod["metadata"]["labels"] for pod in tool_pods(objs)]
    selectors = [s["spec"]["selector"] for s in of_kind(objs, "Service")]
    selectors.append(one(objs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"])
    for selector in selectors:
        assert labels_match(selector, pod_labels)
        for labels in other_pods:
            assert not labels_match(selector, labels)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_headless_service_publishes_not_ready_client_and_bus_ports(rendered, scenario):
    objs = rendered(scenario)
    sts = sts_of(objs)
    port = merged_values(scenario_values(scenario))["redis"]["port"]
    headless = one(objs, "Service", sts["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert {(p["port"], p["targetPort"]) for p in headless["spec"]["ports"]} == {
        (port, "redis"),
        (port + 10000, "redis-bus"),
    }
    ports = {p["name"]: p["containerPort"] for p in redis_of(objs)["ports"]}
    tls = merged_values(scenario_values(scenario))["tls"]
    plain = {"redis-plain": tls["plainPort"]} if tls["enabled"] and tls["plainPort"] else {}
    assert ports == {"redis": port, "redis-bus": port + 10000} | plain


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_redis_container_follows_the_contract(rendered, scenario):
    objs = rendered(scenario)
    values = merged_values(scenario_values(scenario))
    sts = sts_of(objs)
    redis = redis_of(objs)
    port = values["redis"]["port"]
    cmd = redis["command"]
    assert cmd[:2] == [f"{values['image']['engine']}-server", "/etc/redis/redis.conf"]
    assert cmd[cmd.index("--cluster-announce-ip") + 1] == "$(POD_IP)"
    assert cmd[cmd.index("--cluster-announce-hostname") + 1] == (
        f"$(POD_NAME).{sts['spec']['serviceName']}.$(POD_NAMESPACE).svc.{values['clusterDomain']}"
    )
    env = env_of(redis)
    assert env["POD_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["REDIS_PORT"] == str(port)
    assert env["PRESTOP_TIMEOUT_SECONDS"] == str(values["terminationGracePeriodSeconds"] - 5)
    assert (
        sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        == values["terminationGracePeriodSeconds"]
    )
    assert redis["readinessProbe"]["exec"]["command"] == ["sh", "/scripts/readiness.sh"]
    assert redis["livenessProbe"]["exec"]["command"] == ["sh", "/scripts/liveness.sh"]
    assert redis["livenessProbe"]["timeoutSeconds"] >= 5
    assert env["LIVENESS_TIMEOUT_SECONDS"] == str(redis["livenessProbe"]["timeoutSeconds"])
    assert redis["lifecycle"]["preStop"]["exec"]["command"] == ["sh", "/scripts/prestop.sh"]
    mounts = {m["mountPath"]: m["name"] for m in redis["volumeMounts"]}
    expected = {"/data": "data", "/etc/redis": "config", "/scripts": "scripts", "/tmp": "tmp"}
    if values["auth"]["enabled"]:
        expected |= {AUTH_DIR: "auth", "/run/redis-auth": "auth-runtime"}
        # Paths only: the scripts read the password file.
        assert {k: env[k] for k in AUTH_ENV} == AUTH_ENV
        assert all(m.get("readOnly") for m in redis["volumeMounts"] if m["name"].startswith("auth"))
    else:
        assert not set(AUTH_ENV) & set(env)
    if values["tls"]["enabled"]:
        expected |= {TLS_DIR: "tls"}
        assert {k: env[k] for k in tls_env(values)} == tls_env(values)
        assert TLS_MOUNT in redis["volumeMounts"]
    else:
        assert not [k for k in env if k.startswith("REDIS_TLS")]
    assert mounts == expected
    assert redis["image"] == f"{values['image']['repository']}:{values['image']['tag']}"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_prepare_init_container_rewrites_nodes_conf_with_the_tools_image(rendered, scenario):
    objs = rendered(scenario)
    values = merged_values(scenario_values(scenario))
    spec = sts_of(objs)["spec"]["template"]["spec"]
    prepare = container(spec, "prepare", init=True)
    assert prepare["image"] == tools_image(values)
    assert prepare["args"] == ["prepare-node"]
    expected = {
        "REDIS_CLUSTER_NODES_CONF": "/data/nodes.conf",
        "REDIS_CLUSTER_PREPARE_TIMEOUT": str(values["redis"]["prepareTimeoutSeconds"]),
        "REDIS_CLUSTER_TAKEOVER_TIMEOUT": str(values["redis"]["takeoverTimeoutSeconds"]),
    }
    mounts = [{"name": "data", "mountPath": "/data"}, {"name": "tmp", "mountPath": "/tmp"}]
    if values["auth"]["enabled"]:
        # It writes the users' include from the Secret's files and the application users, and asks its
        # peers (as admin) whether a replica took over.
        expected |= AUTH_ENV | {
            "REDIS_CLUSTER_AUTH_DIR": AUTH_DIR,
            "REDIS_CLUSTER_ACL_USERS": "/etc/redis/acl-users",
            "REDIS_CLUSTER_AUTH_INCLUDE": "/run/redis-auth/auth.conf",
        }
        mounts += [
            AUTH_MOUNT,
            {"name": "auth-runtime", "mountPath": "/run/redis-auth"},
            {"name": "config", "mountPath": "/etc/redis", "readOnly": True},
        ]
    if values["tls"]["enabled"]:
        # It asks its peers over TLS.
        expected |= tls_env(values)
        mounts += [TLS_MOUNT]
    assert env_of(prepare) == expected
    assert prepare["volumeMounts"] == mounts
    assert prepare["securityContext"] == container(spec, "redis")["securityContext"]
    assert spec["initContainers"][-1]["name"] == "prepare", "prepare runs last, after volume permissions"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_pods_run_non_root_read_only_without_capabilities(rendered, scenario):
    objs = rendered(scenario)
    values = merged_values(scenario_values(scenario))
    pods = [sts_of(objs)["spec"]["template"]["spec"], one(objs, "Pod")["spec"]]
    pods += [pod["spec"] for pod in tool_pods(objs)]
    for spec in pods:
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == values["securityContext"]["runAsUser"]
        assert spec["securityContext"]["fsGroup"] == values["securityContext"]["fsGroup"]
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch"
        for c in spec["containers"] + [
            c for c in spec.get("initContainers", []) if c["name"] != "volume-permissions"
        ]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert sc["runAsNonRoot"] is True
    redis_pod = pods[0]
    assert redis_pod["automountServiceAccountToken"] is False


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_redis_conf_has_the_cluster_settings_and_never_a_password(rendered, scenario):
    objs = rendered(scenario)
    values = merged_values(scenario_values(scenario))
    conf = redis_conf(objs, sts_of(objs)["metadata"]["name"])
    cluster = values["cluster"]
    tls = values["tls"]
    port_lines = (
        [f"port {tls['plainPort']}", f"tls-port {values['redis']['port']}"]
        if tls["enabled"]
        else [f"port {values['redis']['port']}"]
    )
    assert [line for line in conf if line.startswith(("port ", "tls-port "))] == port_lines
    for line in [
        "cluster-enabled yes",
        "cluster-config-file /data/nodes.conf",
        "dir /data",
        "appendonly yes",
        "protected-mode no",
        f"cluster-node-timeout {cluster['nodeTimeout']}",
        f"cluster-preferred-endpoint-type {cluster['preferredEndpointType']}",
        f"cluster-require-full-coverage {'yes' if cluster['requireFullCoverage'] else 'no'}",
        f"repl-diskless-sync-max-replicas {cluster['replicasPerMaster']}",
    ]:
        assert line in conf
    assert not [line for line in conf if line.startswith(("requirepass", "masterauth", "user "))]
    for cm in of_kind(objs, "ConfigMap"):
        text = yaml.safe_dump(cm)
        assert "requirepass " not in text and "masterauth " not in text
    data = one(objs, "ConfigMap", sts_of(objs)["metadata"]["name"])["data"]
    if values["auth"]["enabled"]:
        # The users' include comes last, so nothing before it (redis.extraConfig included) overrides it.
        assert conf[-1] == "include /run/redis-auth/auth.conf"
        users = values["auth"]["users"]
        assert data["acl-users"].splitlines() == [f"{u['name']} {u['rules']}" for u in users]
    else:
        assert not [line for line in conf if line.startswith("include")]
        assert set(data) == {"redis.conf"}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scripts_come_from_the_chart_files_executable_at_scripts(rendered, scenario):
    objs = rendered(scenario)
    spec = sts_of(objs)["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    scripts_cm = one(objs, "ConfigMap", volumes["scripts"]["configMap"]["name"])
    assert set(scripts_cm["data"]) == {"readiness.sh", "prestop.sh", "liveness.sh", "auth.sh", "tls.sh"}
    assert volumes["scripts"]["configMap"]["defaultMode"] == 0o555
    assert volumes["config"]["configMap"]["name"] == sts_of(objs)["metadata"]["name"]
    assert volumes["tmp"] == {"name": "tmp", "emptyDir": {}}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_pods_carry_a_sha256_checksum_of_the_config(rendered, scenario):
    checksum = sts_of(rendered(scenario))["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    assert len(checksum) == 64 and set(checksum) <= set("0123456789abcdef")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_object_carries_the_standard_labels_and_fitting_names(rendered, scenario):
    for obj in rendered(scenario):
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "redis-cluster"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == f"redis-cluster-{CHART_META['version']}"
        assert "app.kubernetes.io/component" in labels
        cluster_scoped = obj["kind"] in ("PersistentVolume", "StorageClass")
        limit = 253 if cluster_scoped else 63
        assert len(obj["metadata"]["name"]) <= limit
        if not cluster_scoped:
            assert obj["metadata"]["namespace"] == NAMESPACE


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_hook_job_env_matches_the_contract(rendered, scenario):
    objs = rendered(scenario)
    values = merged_values(scenario_values(scenario))
    if not values["hook"]["enabled"]:
        assert not hooks([o for o in objs if o["kind"] != "Pod"])
        return
    sts = sts_of(objs)
    job = init_job(objs)
    spec = job["spec"]["template"]["spec"]
    init = tool(job)
    expected = tools_env(objs, values)
    expected["REDIS_CLUSTER_RECOVER_LOST_SLOTS"] = str(values["cluster"]["recoverLostSlots"]).lower()
    if values["auth"]["enabled"]:
        # It sets every user on every running node from the Secret's files (a rotation, a new user).
        expected["REDIS_CLUSTER_AUTH_DIR"] = AUTH_DIR
        expected["REDIS_CLUSTER_ACL_USERS"] = "/etc/redis/acl-users"
        assert AUTH_MOUNT in init["volumeMounts"]
        assert {"name": "acl-users", "mountPath": "/etc/redis", "readOnly": True} in init["volumeMounts"]
        assert auth_volume(values) in spec["volumes"]
        assert {
            "name": "acl-users",
            "configMap": {
                "name": sts["metadata"]["name"],
                "items": [{"key": "acl-users", "path": "acl-users"}],
            },
        } in spec["volumes"]
    if values["tls"]["enabled"]:
        assert TLS_MOUNT in init["volumeMounts"]
        assert tls_volume(values) in spec["volumes"]
    assert env_of(init) == expected
    assert init["args"] == ["init", "--output", "json"]
    assert init["image"] == tools_image(values)
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "post-install,post-upgrade"
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    assert job["spec"]["backoffLimit"] == values["hook"]["backoffLimit"]
    assert job["spec"]["activeDeadlineSeconds"] == values["hook"]["activeDeadlineSeconds"]
    assert spec["restartPolicy"] == "Never"
    assert job["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "cluster-init"
    # The selector query really selects the Redis pods.
    query = dict(pair.split("=") for pair in env_of(init)["REDIS_CLUSTER_POD_SELECTOR"].split(","))
    assert labels_match(query, sts["spec"]["template"]["metadata"]["labels"])


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s != "hook-disabled"])
def test_scale_in_job_drains_before_the_upgrade_with_the_new_shape(rendered, scenario):
    objs = rendered(scenario)
    values = merged_values(scenario_values(scenario))
    job = scale_in_job(objs)
    assert job["metadata"]["name"] == f"{FULL}-init-scale-in"
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-upgrade"
    assert annotations["helm.sh/hook-weight"] == "0"
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    assert job["spec"]["backoffLimit"] == values["hook"]["backoffLimit"]
    assert job["spec"]["activeDeadlineSeconds"] == values["hook"]["activeDeadlineSeconds"]
    assert job["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "cluster-scale-in"
    c = tool(job)
    assert c["args"] == ["scale-in", "--output", "json"]
    env = env_of(c)
    assert env.pop("REDIS_CLUSTER_TARGET_ENGINE_FILE") == "/tmp/engine-version"
    assert env == tools_env(objs, values), "the init env without RECOVER_LOST_SLOTS and the users"
    spec = job["spec"]["template"]["spec"]
    # First the engine the upgrade moves to says its version (the tools refuse a move it cannot make): the
    # Redis pods' own image, its own server binary, into the pod's shared /tmp.
    (probe,) = spec["initContainers"]
    redis_container = next(
        x for x in sts_of(objs)["spec"]["template"]["spec"]["containers"] if x["name"] == "redis"
    )
    server = f"{values['image']['engine']}-server"
    assert probe["name"] == "engine-version"
    assert probe["image"] == redis_container["image"]
    assert probe["command"] == ["sh", "-c", f"exec {server} --version >/tmp/engine-version"]
    assert probe["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert probe["securityContext"] == c["securityContext"]
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"  # a refusal shows in the pod's status
    if values["auth"]["enabled"]:
        # The Secret exists by then (the Secret Job runs first); optional all the same, so the pod starts
        # whatever happens to the Secret (it finds nothing to do on Argo CD's first sync).
        # With TLS, the TLS Secret optional too: on Argo CD's first sync the Certificate is not there yet.
        tls = [tls_volume(values, optional=True)] if values["tls"]["enabled"] else []
        assert spec["volumes"] == [{"name": "tmp", "emptyDir": {}}, auth_volume(values, optional=True), *tls]
        tls_mount = [TLS_MOUNT] if values["tls"]["enabled"] else []
        assert c["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}, AUTH_MOUNT, *tls_mount]
    # Same pod as the init Job but for the container's name, args, env and mounts and the volumes.
    init = init_job(objs)["spec"]["template"]["spec"]
    strip = ("name", "args", "env", "volumeMounts")
    assert {k: v for k, v in tool(job).items() if k not in strip} == {
        k: v for k, v in tool(init_job(objs)).items() if k not in strip
    }
    assert {k: v for k, v in spec.items() if k not in ("containers", "volumes", "initContainers")} == {
        k: v for k, v in init.items() if k not in ("containers", "volumes")
    }


def test_scale_in_job_is_told_the_smaller_shape(renderer):
    objs = renderer.render({"cluster": {"masters": 4, "replicasPerMaster": 0}})
    env = env_of(tool(scale_in_job(objs)))
    assert (
        env["REDIS_CLUSTER_PODS"],
        env["REDIS_CLUSTER_MASTERS"],
        env["REDIS_CLUSTER_REPLICAS_PER_MASTER"],
    ) == ("4", "4", "0")
    assert sts_of(objs)["spec"]["replicas"] == 4


def test_memory_limit_reaches_the_tools_only_when_redis_has_one(rendered):
    storageclass = rendered("storageclass")
    for workload in of_kind(storageclass, "Job") + of_kind(storageclass, "Deployment"):
        assert env_of(tool(workload))["REDIS_CLUSTER_MEMORY_LIMIT"] == "2Gi"
    defaults = rendered("defaults")
    for workload in of_kind(defaults, "Job") + of_kind(defaults, "Deployment"):
        assert "REDIS_CLUSTER_MEMORY_LIMIT" not in env_of(tool(workload))


def test_recover_lost_slots_is_off_by_default_and_given_to_the_init_job_only(renderer, rendered):
    assert env_of(tool(init_job(rendered("defaults"))))["REDIS_CLUSTER_RECOVER_LOST_SLOTS"] == "false"
    for objs in (rendered("5-masters-2-replicas"), renderer.render({"cluster": {"recoverLostSlots": True}})):
        assert env_of(tool(init_job(objs)))["REDIS_CLUSTER_RECOVER_LOST_SLOTS"] == "true"
        assert "REDIS_CLUSTER_RECOVER_LOST_SLOTS" not in env_of(tool(scale_in_job(objs)))
        assert "REDIS_CLUSTER_RECOVER_LOST_SLOTS" not in env_of(tool(reconciler_of(objs)))


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s != "hook-disabled"])
def test_hook_rbac_reads_pods_only_and_exists_before_the_job(rendered, scenario):
    objs = rendered(scenario)
    job = init_job(objs)
    sa_name = job["spec"]["template"]["spec"]["serviceAccountName"]
    assert scale_in_job(objs)["spec"]["template"]["spec"]["serviceAccountName"] == sa_name
    role = by_component(objs, "Role", "cluster-init")
    binding = by_component(objs, "RoleBinding", "cluster-init")
    hook_sa = one(objs, "ServiceAccount", sa_name)
    assert role["rules"][0] == {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}
    assert all(rule["resources"] == ["secrets"] for rule in role["rules"][1:]), "pods, then the Secret only"
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa_name, "namespace": NAMESPACE}]
    # Every phase's Jobs use them: created first in each phase (lower weight), deleted after it succeeded
    # (hook-succeeded) and created again for the next phase; pre-install for the Secret Job.
    job_weight = min(int(j["metadata"]["annotations"]["helm.sh/hook-weight"]) for j in of_kind(objs, "Job"))
    for obj in (role, binding, hook_sa):
        annotations = obj["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade,post-install,post-upgrade"
        assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
        assert int(annotations["helm.sh/hook-weight"]) < job_weight
    assert int(role["metadata"]["annotations"]["helm.sh/hook-weight"]) <= int(
        binding["metadata"]["annotations"]["helm.sh/hook-weight"]
    )


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_helm_test_pod_checks_cluster_state_and_a_round_trip(rendered, scenario):
    objs = rendered(scenario)
    values = merged_values(scenario_values(scenario))
    pod = one(objs, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    c = pod["spec"]["containers"][0]
    assert c["image"] == f"{values['image']['repository']}:{values['image']['tag']}"
    script = c["command"][-1]
    assert c["command"][:2] == ["sh", "-ec"], "any failed check fails the test pod"
    assert "cluster_state:ok" in script
    through_access = [
        line for line in script.splitlines() if '"$ACCESS_HOST"' in line and " ping" not in line
    ]
    assert {" set ", " get "} <= {op for line in through_access for op in (" set ", " get ") if op in line}
    for line in through_access:
        assert "cli -c " in line, f"cluster redirects must be followed: {line.strip()}"
    # cli is redis-cli (over TLS when REDIS_TLS_DIR is set: tls_cli of files/tls.sh, bounded), with the
    # login when there is one.
    assert 'cli() { tls_cli 10 "$@"; }' in script and "tls_cli() {" in script
    env = env_of(c)
    assert env["PODS"] == str(sts_of(objs)["spec"]["replicas"])
    assert env["ACCESS_PORT"] == str(values["service"]["port"])
    assert "REDISCLI_AUTH" not in env
    if values["auth"]["enabled"]:
        # The Secret as files; the script logs in as admin with the first line the cluster accepts.
        assert {k: env[k] for k in AUTH_ENV} == AUTH_ENV
        assert AUTH_MOUNT in c["volumeMounts"]
        assert auth_volume(values) in pod["spec"]["volumes"]
        assert 'tls_cli 10 --user "$REDIS_USERNAME" --no-auth-warning' in script
        assert 'done <"$REDIS_PASSWORD_FILE"' in script
        printing = [line for line in script.splitlines() if line.strip().startswith(("echo", "printf"))]
        assert not [line for line in printing if "REDISCLI_AUTH" in line or "candidate" in line]
    else:
        assert not set(AUTH_ENV) & set(env)
        assert [v["name"] for v in pod["spec"]["volumes"]] == ["tmp"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_volumes_bind_one_to_one_to_the_pods_claims(rendered, scenario):
    objs = rendered(scenario)
    values = merged_values(scenario_values(scenario))
    persistence = values["persistence"]
    sts = sts_of(objs)
    pvs = of_kind(objs, "PersistentVolume")
    templates = sts["spec"].get("volumeClaimTemplates", [])
    if persistence["type"] == "none":
        assert not templates and not pvs
        data = [v for v in sts["spec"]["template"]["spec"]["volumes"] if v["name"] == "data"]
        assert data == [{"name": "data", "emptyDir": {}}]
        return
    (vct,) = templates
    assert vct["metadata"]["name"] == "data"
    assert vct["metadata"]["labels"] == SELECTOR, "claim templates are immutable: selector labels only"
    assert vct["spec"]["resources"]["requests"]["storage"] == persistence["size"]
    assert vct["spec"]["accessModes"] == persistence["accessModes"]
    if persistence["type"] == "storageClass":
        assert not pvs
        assert vct["spec"].get("storageClassName") == persistence.get("storageClassName")
        return
    claims = [f"data-{sts['metadata']['name']}-{i}" for i in range(sts["spec"]["replicas"])]
    assert sorted(pv["spec"]["claimRef"]["name"] for pv in pvs) == sorted(claims)
    assert len({pv["metadata"]["name"] for pv in pvs}) == len(pvs)
    for pv in pvs:
        ref = pv["spec"]["claimRef"]
        assert ref["namespace"] == NAMESPACE and ref["kind"] == "PersistentVolumeClaim"
        assert NAMESPACE in pv["metadata"]["name"], "PVs are cluster-scoped: the name carries the namespace"
        assert pv["spec"]["storageClassName"] == vct["spec"]["storageClassName"]
        assert pv["spec"]["capacity"]["storage"] == persistence["size"]
        assert pv["spec"]["accessModes"] == persistence["accessModes"]
        assert pv["spec"]["persistentVolumeReclaimPolicy"] == persistence["reclaimPolicy"]
        assert pv["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    # The class is unique to the release and namespace, so no other claim can bind these PVs.
    assert (
        NAMESPACE in vct["spec"]["storageClassName"]
        and sts["metadata"]["name"] in vct["spec"]["storageClassName"]
    )


# --- one scenario each -----------------------------------------------------------------------------


def test_defaults_soft_anti_affinity_on_hostname_and_clusterip_access(rendered):
    objs = rendered("defaults")
    sts = sts_of(objs)
    assert sts["spec"]["replicas"] == 6
    anti = sts["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in anti
    (term,) = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == REDIS_SELECTOR
    access = one(objs, "Service", FULL)
    assert access["spec"]["type"] == "ClusterIP"
    assert access["spec"]["ports"] == [
        {"name": "tcp-redis", "port": 6379, "targetPort": "redis", "protocol": "TCP"}
    ]
    assert "cluster-node-timeout 5000" in redis_conf(objs)
    assert one(objs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    assert "storageClassName" not in sts["spec"]["volumeClaimTemplates"][0]["spec"]
    redis_sa = one(objs, "ServiceAccount", FULL)
    assert redis_sa["automountServiceAccountToken"] is False
    assert sts["spec"]["template"]["spec"]["serviceAccountName"] == FULL
    assert [c["name"] for c in sts["spec"]["template"]["spec"]["initContainers"]] == ["prepare"]


def test_nfs_renders_one_static_pv_per_pod_on_the_server(rendered):
    pvs = sorted(of_kind(rendered("nfs"), "PersistentVolume"), key=lambda pv: pv["metadata"]["name"])
    assert [pv["metadata"]["name"] for pv in pvs] == [f"{NAMESPACE}-data-{FULL}-{i}" for i in range(6)]
    for i, pv in enumerate(pvs):
        assert pv["spec"]["nfs"] == {
            "server": "10.0.0.10",
            "path": f"/exports/redis/{NAMESPACE}/{RELEASE}/{i}",
        }
        assert pv["spec"]["claimRef"]["name"] == f"data-{FULL}-{i}"
        assert pv["spec"]["mountOptions"] == ["nfsvers=4.1", "hard"]
        assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
        assert "hostPath" not in pv["spec"]


def test_nfs_volume_permissions_init_container_chowns_data_as_root_first(rendered):
    spec = sts_of(rendered("nfs"))["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["initContainers"]] == ["volume-permissions", "prepare"]
    perms = spec["initContainers"][0]
    assert perms["command"] == ["chown", "-R", "999:999", "/data"]
    assert perms["securityContext"]["runAsUser"] == 0
    assert set(perms["securityContext"]["capabilities"]["add"]) <= {"CHOWN", "DAC_OVERRIDE", "FOWNER"}
    assert perms["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_hostpath_renders_static_pvs_on_the_named_node(rendered):
    objs = rendered("hostpath")
    pvs = sorted(of_kind(objs, "PersistentVolume"), key=lambda pv: pv["metadata"]["name"])
    assert len(pvs) == 6
    for i, pv in enumerate(pvs):
        assert pv["spec"]["hostPath"] == {
            "path": f"/var/lib/redis-test/{RELEASE}-{i}",
            "type": "DirectoryOrCreate",
        }
        terms = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
        assert terms == [
            {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-1"]}]}
        ]
        assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
        assert "nfs" not in pv["spec"]
    spec = sts_of(objs)["spec"]["template"]["spec"]
    assert "affinity" not in spec, "antiAffinity.type none"
    assert [c["name"] for c in spec["initContainers"]] == ["volume-permissions", "prepare"]


def test_storageclass_claims_use_the_named_class_and_size(rendered):
    objs = rendered("storageclass")
    sts = sts_of(objs)
    vct = sts["spec"]["volumeClaimTemplates"][0]
    assert vct["spec"]["storageClassName"] == "fast-ssd"
    assert vct["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert redis_of(objs)["resources"] == {
        "requests": {"cpu": "250m", "memory": "512Mi"},
        "limits": {"memory": "2Gi"},
    }


def test_none_uses_emptydir_for_data(rendered):
    sts = sts_of(rendered("none"))
    assert "volumeClaimTemplates" not in sts["spec"]
    assert {"name": "data", "emptyDir": {}} in sts["spec"]["template"]["spec"]["volumes"]


def test_nodeport_exposes_the_fixed_node_port_with_annotations(rendered):
    access = one(rendered("nodeport"), "Service", FULL)
    assert access["spec"]["type"] == "NodePort"
    assert access["spec"]["ports"] == [
        {"name": "tcp-redis", "port": 6380, "targetPort": "redis", "protocol": "TCP", "nodePort": 30079}
    ]
    assert access["metadata"]["annotations"] == {"example.org/owner": "platform-team"}


def test_loadbalancer_access_and_hostname_redirects(rendered):
    objs = rendered("loadbalancer")
    access = one(objs, "Service", FULL)
    assert access["spec"]["type"] == "LoadBalancer"
    assert "nodePort" not in access["spec"]["ports"][0]
    assert "cluster-preferred-endpoint-type hostname" in redis_conf(objs)


def test_five_masters_two_replicas_on_a_custom_port_and_domain(rendered):
    objs = rendered("5-masters-2-replicas")
    sts = sts_of(objs)
    assert sts["spec"]["replicas"] == 15
    conf = redis_conf(objs)
    for line in [
        "port 7000",
        "cluster-node-timeout 15000",
        "repl-diskless-sync-max-replicas 2",
        "cluster-require-full-coverage no",
        "maxmemory 512mb",
        "maxmemory-policy allkeys-lru",
    ]:
        assert line in conf
    env = env_of(tool(init_job(objs)))
    assert (
        env["REDIS_CLUSTER_PODS"],
        env["REDIS_CLUSTER_MASTERS"],
        env["REDIS_CLUSTER_REPLICAS_PER_MASTER"],
    ) == ("15", "5", "2")
    assert env["REDIS_CLUSTER_PORT"] == "7000" and env["REDIS_CLUSTER_DOMAIN"] == "k8s.example.internal"
    assert env_of(redis_of(objs))["PRESTOP_TIMEOUT_SECONDS"] == "55"
    assert env_of(redis_of(objs))["REDIS_PORT"] == "7000", "the probes' scripts read the port from here"
    headless = one(objs, "Service", HEADLESS)
    assert sorted(p["port"] for p in headless["spec"]["ports"]) == [7000, 17000]


def test_hard_anti_affinity_requires_distinct_zones(rendered):
    objs = rendered("hard-anti-affinity")
    spec = sts_of(objs)["spec"]["template"]["spec"]
    anti = spec["affinity"]["podAntiAffinity"]
    assert "preferredDuringSchedulingIgnoredDuringExecution" not in anti
    assert anti["requiredDuringSchedulingIgnoredDuringExecution"] == [
        {"topologyKey": "topology.kubernetes.io/zone", "labelSelector": {"matchLabels": REDIS_SELECTOR}}
    ]
    assert spec["nodeSelector"] == {"node-role.example.org/redis": "true"}
    assert spec["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "redis", "effect": "NoSchedule"}
    ]
    meta = sts_of(objs)["spec"]["template"]["metadata"]
    assert meta["labels"]["team"] == "cache"
    assert meta["annotations"]["example.org/backup"] == "false"
    # The hooks, the reconciler and the test pod run on the same dedicated nodes.
    for pod in tool_pods(objs):
        assert pod["spec"]["tolerations"] == spec["tolerations"]
        assert pod["spec"]["nodeSelector"] == spec["nodeSelector"]
    assert one(objs, "Pod")["spec"]["nodeSelector"] == spec["nodeSelector"]


def test_hook_disabled_renders_no_hook_and_uses_the_given_service_account(rendered):
    objs = rendered("hook-disabled")
    assert not of_kind(objs, "Job") and not of_kind(objs, "Role") and not of_kind(objs, "ServiceAccount")
    assert not of_kind(objs, "Deployment"), "reconciler.enabled false"
    sts = one(objs, "StatefulSet", "cache")
    spec = sts["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "redis-sa"
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert sts["spec"]["serviceName"] == "cache-headless"
    assert one(objs, "Pod")["spec"]["imagePullSecrets"] == [{"name": "regcred"}]


# --- the reconciler and the claims' retention --------------------------------------------------------


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s != "hook-disabled"])
def test_reconciler_runs_one_pod_with_the_tools_env_and_its_interval(rendered, scenario):
    objs = rendered(scenario)
    values = merged_values(scenario_values(scenario))
    deployment = reconciler_of(objs)
    assert deployment["metadata"]["name"] == f"{FULL}-reconciler"
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}, "never two reconcilers at once"
    assert "helm.sh/hook" not in deployment["metadata"].get("annotations", {})
    c = tool(deployment)
    assert c["args"] == ["reconcile"]
    assert c["image"] == tools_image(values)
    expected = tools_env(objs, values)
    expected["REDIS_CLUSTER_RECONCILE_INTERVAL"] = str(values["reconciler"]["intervalSeconds"])
    assert env_of(c) == expected, "never REDIS_CLUSTER_RECOVER_LOST_SLOTS"
    assert c.get("resources") == values["reconciler"]["resources"]
    assert c["securityContext"] == tool(init_job(objs))["securityContext"]
    spec = deployment["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is True and spec["enableServiceLinks"] is False
    assert "restartPolicy" not in spec
    assert spec["securityContext"] == sts_of(objs)["spec"]["template"]["spec"]["securityContext"]
    assert spec["serviceAccountName"] == deployment["metadata"]["name"]


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s != "hook-disabled"])
def test_reconciler_pods_are_never_taken_for_redis_pods(rendered, scenario):
    objs = rendered(scenario)
    deployment = reconciler_of(objs)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "reconciler"
    assert labels_match(deployment["spec"]["selector"]["matchLabels"], labels)
    redis_labels = sts_of(objs)["spec"]["template"]["metadata"]["labels"]
    assert not labels_match(deployment["spec"]["selector"]["matchLabels"], redis_labels)
    # The tools' pod query, the Services, the PDB and the anti-affinity all select component=redis.
    query = dict(
        pair.split("=") for pair in env_of(tool(deployment))["REDIS_CLUSTER_POD_SELECTOR"].split(",")
    )
    selectors = [query, one(objs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"]]
    selectors += [s["spec"]["selector"] for s in of_kind(objs, "Service")]
    for selector in selectors:
        assert not labels_match(selector, labels)


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s != "hook-disabled"])
def test_reconciler_rbac_watches_pods_only_and_is_no_hook(rendered, scenario):
    objs = rendered(scenario)
    name = reconciler_of(objs)["metadata"]["name"]
    role = one(objs, "Role", name)
    binding = one(objs, "RoleBinding", name)
    sa = one(objs, "ServiceAccount", name)
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}]
    for obj in (role, binding, sa):
        assert "helm.sh/hook" not in obj["metadata"].get("annotations", {})
        assert obj["metadata"]["labels"]["app.kubernetes.io/component"] == "reconciler"


def test_reconciler_is_on_by_default_and_off_by_value(renderer, rendered):
    assert rendered("defaults") and reconciler_of(rendered("defaults"))
    objs = renderer.render({"reconciler": {"enabled": False}})
    assert not [d for d in of_kind(objs, "Deployment") if d["metadata"]["name"].endswith("-reconciler")]
    names = {o["metadata"]["name"] for o in objs}
    assert not {n for n in names if n.endswith("-reconciler")}
    assert init_job(objs) and scale_in_job(objs), "the hooks still run"


def test_reconciler_interval_and_resources_come_from_the_values(rendered):
    sized = tool(reconciler_of(rendered("storageclass")))
    assert sized["resources"] == {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "160Mi"}}
    env = env_of(tool(reconciler_of(rendered("5-masters-2-replicas"))))
    assert env["REDIS_CLUSTER_RECONCILE_INTERVAL"] == "10"
    assert env_of(tool(reconciler_of(rendered("defaults"))))["REDIS_CLUSTER_RECONCILE_INTERVAL"] == "2"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_claims_retention_policy_follows_the_values_when_there_are_claims(rendered, scenario):
    values = merged_values(scenario_values(scenario))
    spec = sts_of(rendered(scenario))["spec"]
    if values["persistence"]["type"] == "none":
        assert "persistentVolumeClaimRetentionPolicy" not in spec
        return
    assert spec["persistentVolumeClaimRetentionPolicy"] == values["persistence"]["retentionPolicy"]


def test_claims_are_retained_by_default_and_deleted_on_scale_in_when_asked(rendered):
    policy = sts_of(rendered("defaults"))["spec"]["persistentVolumeClaimRetentionPolicy"]
    assert policy == {"whenScaled": "Retain", "whenDeleted": "Retain"}
    policy = sts_of(rendered("storageclass"))["spec"]["persistentVolumeClaimRetentionPolicy"]
    assert policy == {"whenScaled": "Delete", "whenDeleted": "Retain"}


@pytest.mark.parametrize("scenario", ["nfs", "hostpath"])
def test_static_pvs_a_scale_in_leaves_out_stay_with_their_claims(renderer, scenario):
    """A smaller cluster renders fewer PVs; Helm keeps the ones left out (resource-policy keep), so a
    retained claim never loses its volume and a later scale-out adopts the PV again."""
    values = scenario_values(scenario)
    before = of_kind(renderer.render(values), "PersistentVolume")
    smaller = {**values, "cluster": {"masters": 3, "replicasPerMaster": 0}}
    after = {pv["metadata"]["name"] for pv in of_kind(renderer.render(smaller), "PersistentVolume")}
    left_out = [pv for pv in before if pv["metadata"]["name"] not in after]
    assert len(after) == 3 and len(left_out) == 3
    assert sorted(pv["spec"]["claimRef"]["name"] for pv in left_out) == [
        f"data-{FULL}-{i}" for i in (3, 4, 5)
    ]
    for pv in left_out:
        assert pv["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


# --- across renders --------------------------------------------------------------------------------


def test_pv_names_and_classes_differ_between_namespaces_and_releases(renderer):
    values = scenario_values("nfs")
    seen_names: set[str] = set()
    seen_classes: set[str] = set()
    for release, namespace in [("redis", "a"), ("redis", "b"), ("cache", "a")]:
        pvs = of_kind(renderer.render(values, release=release, namespace=namespace), "PersistentVolume")
        names = {pv["metadata"]["name"] for pv in pvs}
        classes = {pv["spec"]["storageClassName"] for pv in pvs}
        assert len(names) == 6 and len(classes) == 1
        assert not names & seen_names and not classes & seen_classes
        seen_names |= names
        seen_classes |= classes


def test_config_change_rolls_the_pods_other_changes_do_not(renderer):
    def checksum(values):
        return sts_of(renderer.render(values))["spec"]["template"]["metadata"]["annotations"][
            "checksum/config"
        ]

    base = checksum({})
    assert checksum({"redis": {"extraConfig": "maxmemory 1gb"}}) != base
    assert checksum({"cluster": {"nodeTimeout": 6000}}) != base
    assert checksum({"podLabels": {"team": "x"}}) == base
    assert checksum({"service": {"port": 7777}}) == base


def test_a_change_of_replicas_per_master_does_not_roll_the_pods(renderer):
    """It only changes repl-diskless-sync-max-replicas, which the hook sets on the running nodes."""

    def rendered(values):
        objs = renderer.render(values)
        config = one(objs, "ConfigMap", "redis-redis-cluster")["data"]["redis.conf"]
        return sts_of(objs)["spec"]["template"], config

    template, config = rendered({"cluster": {"replicasPerMaster": 1}})
    other_template, other_config = rendered({"cluster": {"replicasPerMaster": 2}})

    assert "repl-diskless-sync-max-replicas 2" in other_config and other_config != config
    assert other_template == template


def test_long_release_names_keep_every_name_within_limits(renderer):
    objs = renderer.render({}, release="a-very-long-release-name-of-thirty-two")
    sts = sts_of(objs)
    assert len(sts["metadata"]["name"]) <= 52
    for obj in objs:
        assert len(obj["metadata"]["name"]) <= (253 if obj["kind"] == "PersistentVolume" else 63)
    assert sts["spec"]["serviceName"].endswith("-headless")


def test_release_name_containing_the_chart_name_is_used_as_is(renderer):
    objs = renderer.render({}, release="redis-cluster")
    assert sts_of(objs)["metadata"]["name"] == "redis-cluster"
    assert one(objs, "Service", "redis-cluster-headless")


@pytest.mark.parametrize("scenario", ["nfs", "hostpath"])
def test_static_pvs_bind_when_their_pod_is_scheduled(rendered, scenario):
    """WaitForFirstConsumer: the scheduler binds each pre-bound claim as it places the pod (an Immediate
    class left one of 8 pods Pending for minutes on an "unbound immediate" claim)."""
    objs = rendered(scenario)
    (storage_class,) = [o for o in objs if o["kind"] == "StorageClass"]
    assert storage_class["volumeBindingMode"] == "WaitForFirstConsumer"
    assert storage_class["provisioner"] == "kubernetes.io/no-provisioner"
    claim_class = sts_of(objs)["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"]
    pv_classes = {o["spec"]["storageClassName"] for o in objs if o["kind"] == "PersistentVolume"}
    assert pv_classes == {claim_class} == {storage_class["metadata"]["name"]}


def test_persistence_defaults_suit_the_aof(rendered):
    conf = redis_conf(rendered("defaults"))
    assert "appendonly yes" in conf
    assert "appendfsync everysec" in conf
    assert "aof-use-rdb-preamble yes" in conf
    assert 'save ""' in conf  # no RDB snapshots beside the AOF, no final save at shutdown
    assert "maxmemory-policy noeviction" in conf
    assert not any(line.startswith("maxmemory ") for line in conf)
    # What Redis's own shutdown may wait for lagging replicas fits the grace period's last 5 s.
    assert "shutdown-timeout 3" in conf


def test_snapshots_and_maxmemory_when_asked_for(rendered):
    conf = redis_conf(rendered("5-masters-2-replicas"))
    assert "save 3600 1 300 100" in conf
    assert "maxmemory 512mb" in conf
    assert "maxmemory-policy allkeys-lru" in conf


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_container_requests_resources(rendered, scenario):
    for obj in rendered(scenario):
        spec = obj.get("spec", {})
        spec = spec.get("template", {}).get("spec", spec)
        for box in spec.get("containers", []) + spec.get("initContainers", []):
            requests = box.get("resources", {}).get("requests", {})
            assert {"cpu", "memory"} <= set(requests), (obj["kind"], box["name"])


def test_prestop_budget_is_the_grace_period_less_the_shutdown_headroom(rendered):
    redis = redis_of(rendered("5-masters-2-replicas"))
    env = {e["name"]: e.get("value") for e in redis["env"]}
    assert env["PRESTOP_TIMEOUT_SECONDS"] == "55"  # terminationGracePeriodSeconds 60 - 5


def test_digests_pin_both_images_in_every_pod(renderer):
    redis_digest, tools_digest = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    images = images_of(
        renderer.render({"image": {"digest": redis_digest}, "tools": {"image": {"digest": tools_digest}}})
    )
    values = merged_values({})
    redis = f"{values['image']['repository']}:{values['image']['tag']}@{redis_digest}"
    assert images == {redis, f"{tools_image(values)}@{tools_digest}"}


@pytest.mark.parametrize("digest", ["sha256:abc", "latest", "sha512:" + "0" * 128])
def test_a_malformed_digest_is_refused_naming_it(refused, digest):
    done = refused(f"image:\n  digest: {digest!r}\n")
    assert "digest" in done and digest in done


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_server_and_every_cli_script_run_the_engines_binaries(rendered, scenario):
    objs = rendered(scenario)
    engine = merged_values(scenario_values(scenario))["image"]["engine"]
    redis = container(sts_of(objs)["spec"]["template"]["spec"], "redis")
    assert redis["command"][0] == f"{engine}-server"
    # files/tls.sh (readiness, liveness, preStop, the helm test pod) calls $REDIS_CLI
    test_pods = [o for o in objs if o["kind"] == "Pod"]
    for c in [redis] + [c for pod in test_pods for c in pod["spec"]["containers"]]:
        assert {"name": "REDIS_CLI", "value": f"{engine}-cli"} in c["env"], c["name"]
