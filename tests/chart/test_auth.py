"""Authentication and network isolation: ACL users whose passwords reach the processes only as files
from a Secret the chart never renders, and NetworkPolicies around the Redis pods, the tools and the
test pod. Rendered like test_render.py (release "redis" in namespace redis-ns)."""

from __future__ import annotations

import json
import re

import pytest

from .chartlib import (
    CHART,
    NAMESPACE,
    RELEASE,
    SCENARIOS,
    container,
    containers_of,
    env_of,
    labels_match,
    merged_values,
    of_kind,
    one,
    pod_specs,
    run,
    scenario_values,
)
from .test_render import (
    AUTH_DIR,
    AUTH_ENV,
    AUTH_MOUNT,
    FULL,
    REDIS_SELECTOR,
    SELECTOR,
    TLS_MOUNT,
    by_component,
    init_job,
    reconciler_of,
    redis_conf,
    scale_in_job,
    secret_job,
    secret_name,
    sts_of,
    tls_volume,
    tool_pods,
    tools_env,
)
from .test_render import tool as tool_container

pytestmark = pytest.mark.chart

HOOK_SCENARIOS = [s for s in SCENARIOS if s != "hook-disabled"]
AUTH_SCENARIOS = [s for s in SCENARIOS if merged_values(scenario_values(s))["auth"]["enabled"]]


# --- no secret in a pod spec, ever ---------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_object_renders_a_secret_or_carries_one_in_env_or_argv(rendered, scenario):
    objs = rendered(scenario)
    assert not of_kind(objs, "Secret"), "the passwords' Secret is never rendered"
    for obj in objs:
        for c in containers_of(obj):
            where = f"{obj['kind']} {obj['metadata']['name']} container {c['name']}"
            for e in c.get("env", []):
                assert "secretKeyRef" not in e.get("valueFrom", {}), f"{where}: env {e['name']} from a Secret"
                assert e["name"] not in ("REDIS_PASSWORD", "REDISCLI_AUTH"), f"{where}: env {e['name']}"
            assert not [f for f in c.get("envFrom", []) if "secretRef" in f], f"{where}: envFrom a Secret"
            argv = c.get("command", []) + c.get("args", [])
            for word in argv:
                assert "--requirepass" not in word and "--masterauth" not in word, where
                assert " -a " not in word and not word.startswith("-a"), f"{where}: a password argument"
            # REDISCLI_AUTH only as a shell variable set inside a script (the helm test pod), never passed.
            for word in argv:
                for line in word.splitlines():
                    if "REDISCLI_AUTH" in line:
                        assert re.fullmatch(
                            r"\s*(REDISCLI_AUTH=\$candidate|export REDISCLI_AUTH)\s*", line
                        ), f"{where}: {line.strip()}"
    text = json.dumps(objs)
    for word in ("--requirepass", "--masterauth", "requirepass ", "masterauth "):
        assert word not in text, word
    # In the scripts ConfigMap REDISCLI_AUTH is only auth.sh's shell variable.
    scripts = one(objs, "ConfigMap", f"{sts_of(objs)['metadata']['name']}-scripts")["data"]
    for name, body in scripts.items():
        if name != "auth.sh":
            assert "REDISCLI_AUTH" not in body.replace("unset REDISCLI_AUTH", ""), name


@pytest.mark.parametrize("scenario", AUTH_SCENARIOS)
def test_every_client_of_the_nodes_logs_in_as_admin_from_the_mounted_file(rendered, scenario):
    objs = rendered(scenario)
    values = merged_values(scenario_values(scenario))
    name = secret_name(values)
    pods = [sts_of(objs)["spec"]["template"]["spec"], one(objs, "Pod")["spec"]]
    pods += [
        pod["spec"]
        for pod in tool_pods(objs)
        if pod["metadata"]["labels"]["app.kubernetes.io/component"] != "auth-secret"
    ]
    for spec in pods:
        (auth,) = [v for v in spec["volumes"] if v["name"] == "auth"]
        assert auth["secret"]["secretName"] == name
        assert auth["secret"]["defaultMode"] == 0o440, "readable by the pods' group (fsGroup) only"
        clients = [
            c
            for c in spec["containers"] + spec.get("initContainers", [])
            # neither talks to a node: no password for them
            if c["name"] not in ("volume-permissions", "engine-version")
        ]
        for c in clients:
            env = env_of(c)
            assert {k: env[k] for k in AUTH_ENV} == AUTH_ENV, c["name"]
            assert AUTH_MOUNT in c["volumeMounts"], c["name"]


# --- the Secret Job ---------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", [s for s in AUTH_SCENARIOS if s in HOOK_SCENARIOS])
def test_secret_job_runs_first_and_never_mounts_the_secret(rendered, scenario):
    objs = rendered(scenario)
    values = merged_values(scenario_values(scenario))
    job = secret_job(objs)
    assert job["metadata"]["name"] == f"{FULL}-init-secret"
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    # After the hook RBAC (-10, -5), before the scale-in Job (0).
    weight = int(annotations["helm.sh/hook-weight"])
    assert weight == -1
    rbac = [by_component(objs, kind, "cluster-init") for kind in ("ServiceAccount", "Role", "RoleBinding")]
    assert max(int(o["metadata"]["annotations"]["helm.sh/hook-weight"]) for o in rbac) < weight
    assert weight < int(scale_in_job(objs)["metadata"]["annotations"]["helm.sh/hook-weight"])
    assert job["spec"]["backoffLimit"] == values["hook"]["backoffLimit"]
    assert job["spec"]["activeDeadlineSeconds"] == values["hook"]["activeDeadlineSeconds"]
    template = job["spec"]["template"]
    assert template["metadata"]["labels"] == {**SELECTOR, "app.kubernetes.io/component": "auth-secret"}
    spec = template["spec"]
    assert spec["serviceAccountName"] == init_job(objs)["spec"]["template"]["spec"]["serviceAccountName"]
    assert spec["restartPolicy"] == "Never"
    c = tool_container(job)
    assert c["args"] == ["ensure-secret"]
    users = [u["name"] for u in values["auth"]["users"]]
    expected = {k: v for k, v in tools_env(objs, values).items() if k not in AUTH_ENV}
    expected |= {
        "REDIS_CLUSTER_SECRET": secret_name(values),
        "REDIS_CLUSTER_SECRET_KEYS": ",".join(
            ["admin-password", "replication-password"] + [f"{u}-password" for u in users]
        ),
        "REDIS_CLUSTER_SECRET_CREATE": "false" if values["auth"].get("existingSecret") else "true",
        # Pods still running open (auth being switched on) get the users live: their rules.
        "REDIS_CLUSTER_ACL_USERS_RULES": "\n".join(
            f"{u['name']} {u['rules']}" for u in values["auth"]["users"]
        ),
    }
    assert env_of(c) == expected
    # The Secret may not exist yet: it is never mounted here. With TLS it reaches the nodes over TLS, with
    # the TLS Secret optional (on a first install the chart's Certificate is created after this Job).
    tls = values["tls"]["enabled"]
    assert spec["volumes"] == [{"name": "tmp", "emptyDir": {}}] + (
        [tls_volume(values, optional=True)] if tls else []
    )
    assert c["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}] + ([TLS_MOUNT] if tls else [])


def test_the_chart_owns_a_generated_secret_by_default(rendered):
    objs = rendered("defaults")
    env = env_of(tool_container(secret_job(objs)))
    assert env["REDIS_CLUSTER_SECRET"] == f"{FULL}-auth"
    assert env["REDIS_CLUSTER_SECRET_KEYS"] == "admin-password,replication-password,app-password"
    assert env["REDIS_CLUSTER_SECRET_CREATE"] == "true"


def test_an_existing_secret_is_only_checked(rendered):
    objs = rendered("auth-existing-secret")
    env = env_of(tool_container(secret_job(objs)))
    assert env["REDIS_CLUSTER_SECRET"] == "my-redis-auth"
    assert env["REDIS_CLUSTER_SECRET_KEYS"] == (
        "admin-password,replication-password,app-password,reports-password"
    )
    assert env["REDIS_CLUSTER_SECRET_CREATE"] == "false"
    for spec in [sts_of(objs)["spec"]["template"]["spec"], one(objs, "Pod")["spec"]]:
        assert {"name": "auth", "secret": {"secretName": "my-redis-auth", "defaultMode": 0o440}} in spec[
            "volumes"
        ]


def test_hook_role_may_create_the_generated_secret_and_touch_only_it(rendered):
    role = by_component(rendered("defaults"), "Role", "cluster-init")
    assert role["rules"][1:] == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": [f"{FULL}-auth"],
            "verbs": ["get", "patch"],
        },
        # Kubernetes cannot restrict create to a name.
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
    ]


def test_hook_role_only_reads_an_existing_secret(rendered):
    role = by_component(rendered("auth-existing-secret"), "Role", "cluster-init")
    assert role["rules"][1:] == [
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["my-redis-auth"], "verbs": ["get"]},
    ]


def test_without_auth_there_is_no_secret_job_no_secret_rule_and_no_mount(rendered):
    objs = rendered("auth-disabled")
    assert "auth-secret" not in [
        j["metadata"]["labels"]["app.kubernetes.io/component"] for j in of_kind(objs, "Job")
    ]
    role = by_component(objs, "Role", "cluster-init")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]
    for obj in objs:
        for spec in pod_specs(obj):
            assert not [v for v in spec.get("volumes", []) if "secret" in v], obj["metadata"]["name"]
        for c in containers_of(obj):
            assert not set(AUTH_ENV) & set(env_of(c)), c["name"]
    conf = redis_conf(objs)
    assert not [line for line in conf if line.startswith("include")]


def test_the_redis_pods_keep_the_users_include_in_memory(rendered):
    spec = sts_of(rendered("defaults"))["spec"]["template"]["spec"]
    (runtime,) = [v for v in spec["volumes"] if v["name"] == "auth-runtime"]
    assert runtime == {"name": "auth-runtime", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}
    redis = container(spec, "redis")
    assert {"name": "auth-runtime", "mountPath": "/run/redis-auth", "readOnly": True} in redis["volumeMounts"]
    prepare = container(spec, "prepare", init=True)
    assert {"name": "auth-runtime", "mountPath": "/run/redis-auth"} in prepare["volumeMounts"], (
        "it writes there"
    )


def test_reconciler_and_scale_in_log_in_but_never_set_users(rendered):
    objs = rendered("defaults")
    for workload in (reconciler_of(objs), scale_in_job(objs)):
        env = env_of(tool_container(workload))
        assert {k: env[k] for k in AUTH_ENV} == AUTH_ENV
        assert "REDIS_CLUSTER_AUTH_DIR" not in env and "REDIS_CLUSTER_ACL_USERS" not in env
        assert AUTH_MOUNT in tool_container(workload)["volumeMounts"]


def test_users_are_listed_for_the_nodes_with_their_rules(rendered):
    data = one(rendered("auth-existing-secret"), "ConfigMap", FULL)["data"]
    assert (
        data["acl-users"]
        == "app ~app:* &* +@all -@dangerous\nreports ~app:* resetchannels -@all +@read +ping\n"
    )


def test_a_change_of_users_is_applied_live_but_auth_on_or_off_rolls_the_pods(renderer):
    def rendered(values):
        objs = renderer.render(values)
        return sts_of(objs)["spec"]["template"], one(objs, "ConfigMap", FULL)["data"]

    template, data = rendered({})
    more = {
        "auth": {"users": [{"name": "app", "rules": "+@all ~*"}, {"name": "jobs", "rules": "+@read ~jobs:*"}]}
    }
    other_template, other_data = rendered(more)
    assert other_data["acl-users"] == "app +@all ~*\njobs +@read ~jobs:*\n" != data["acl-users"]
    assert other_template == template, "the post-upgrade hook sets the users on the running nodes"
    off_template, _ = rendered({"auth": {"enabled": False}})
    checksum = "checksum/config"
    assert off_template["metadata"]["annotations"][checksum] != template["metadata"]["annotations"][checksum]


def test_the_users_include_stays_last_after_extra_config(renderer):
    conf = redis_conf(renderer.render({"redis": {"extraConfig": "lazyfree-lazy-user-del yes\n"}}))
    assert conf[-1] == "include /run/redis-auth/auth.conf"
    assert "lazyfree-lazy-user-del yes" in conf


def test_an_empty_user_list_leaves_admin_and_replication_only(renderer):
    objs = renderer.render({"auth": {"users": []}})
    assert one(objs, "ConfigMap", FULL)["data"]["acl-users"] == ""
    env = env_of(tool_container(secret_job(objs)))
    assert env["REDIS_CLUSTER_SECRET_KEYS"] == "admin-password,replication-password"


# --- refusals -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["admin", "replication", "default", "probe"])
def test_a_reserved_user_name_is_refused_naming_the_user_and_the_fix(refused, name):
    err = refused(f"auth:\n  users:\n    - name: {name}\n      rules: '+@all ~*'\n")
    assert "auth.users[0].name" in err and f'"{name}"' in err and "another name" in err


@pytest.mark.parametrize(
    "word", [">secret", "<secret", "#" + "0" * 64, "!" + "0" * 64, "nopass", "resetpass", "reset"]
)
def test_rules_that_set_passwords_are_refused(refused, word):
    err = refused(f"auth:\n  users:\n    - name: app\n      rules: '+@all {word} ~*'\n")
    assert "auth.users[0].rules" in err and "never hold or change passwords" in err
    if word[0] in "<>#!":
        assert word[1:] not in err, "a password is never echoed back"


def test_rules_are_one_line(refused):
    err = refused('auth:\n  users:\n    - name: app\n      rules: "+@all\\nuser admin on nopass"\n')
    assert "/auth/users/0/rules" in err


@pytest.mark.parametrize("helm_name", ["helm", "helm3"])
def test_a_password_in_values_is_refused_even_without_the_schema(refused, helm_name):
    """The schema refuses the key; without schema validation the chart still says why and what to do."""
    err = refused("auth:\n  password: hunter2\n", "--skip-schema-validation", helm_name=helm_name)
    assert "passwords never go in values" in err and "auth.existingSecret" in err
    assert "hunter2" not in err
    err = refused(
        "auth:\n  existingSecretPasswordKey: password\n", "--skip-schema-validation", helm_name=helm_name
    )
    assert "auth.existingSecretPasswordKey" in err


def test_auth_without_a_hook_needs_an_existing_secret(refused):
    err = refused("hook:\n  enabled: false\n")
    for key in ("auth.enabled", "hook.enabled", "auth.existingSecret", "admin-password,replication-password"):
        assert key in err


@pytest.mark.parametrize("service_type", ["NodePort", "LoadBalancer"])
def test_an_exposed_service_without_auth_is_refused(refused, service_type):
    err = refused(f"auth:\n  enabled: false\nservice:\n  type: {service_type}\n")
    assert "service.type" in err and "auth.enabled" in err and "ClusterIP" in err


# --- NetworkPolicies ------------------------------------------------------------------------------------


def policies(objs) -> dict[str, dict]:
    return {p["metadata"]["labels"]["app.kubernetes.io/component"]: p for p in of_kind(objs, "NetworkPolicy")}


def selects(policy: dict, labels: dict) -> bool:
    selector = policy["spec"]["podSelector"]
    if not labels_match(selector.get("matchLabels", {}), labels):
        return False
    for expr in selector.get("matchExpressions", []):
        assert expr["operator"] == "In"
        if labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


DEFAULT_DNS = {
    "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
    "to": [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ],
}


def test_network_policies_are_on_by_default_and_off_by_value(renderer, rendered):
    assert set(policies(rendered("defaults"))) == {"redis", "tools", "test"}
    assert not of_kind(renderer.render({"networkPolicy": {"enabled": False}}), "NetworkPolicy")
    assert set(policies(rendered("hook-disabled"))) == {"redis", "test"}, "no tools, no tools policy"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_each_pod_of_the_release_is_selected_by_its_own_policy(rendered, scenario):
    objs = rendered(scenario)
    found = policies(objs)
    redis_labels = sts_of(objs)["spec"]["template"]["metadata"]["labels"]
    test_labels = one(objs, "Pod")["metadata"]["labels"]
    tools = [pod["metadata"]["labels"] for pod in tool_pods(objs)]
    expected = {"redis": [redis_labels], "test": [test_labels], "tools": tools}
    for component, policy in found.items():
        for labels in [redis_labels, test_labels, *tools]:
            assert selects(policy, labels) == (labels in expected[component]), (component, labels)
    for labels in tools:
        assert selects(found["tools"], labels)


def test_redis_pods_take_clients_from_the_release_and_reach_peers_and_dns_only(rendered):
    objs = rendered("defaults")
    spec = policies(objs)["redis"]["spec"]
    assert spec["podSelector"]["matchLabels"] == REDIS_SELECTOR
    assert set(spec["policyTypes"]) == {"Ingress", "Egress"}
    client, bus = spec["ingress"]
    assert client["ports"] == [{"port": "redis", "protocol": "TCP"}]
    assert client["from"] == [{"podSelector": {"matchLabels": SELECTOR}}]
    assert bus["ports"] == [{"port": "redis-bus", "protocol": "TCP"}]
    assert bus["from"] == [{"podSelector": {"matchLabels": REDIS_SELECTOR}}]
    # The hook Jobs, the reconciler and the helm test pod reach the client port (release labels), not the bus.
    for labels in [pod["metadata"]["labels"] for pod in tool_pods(objs)] + [
        one(objs, "Pod")["metadata"]["labels"]
    ]:
        assert labels_match(client["from"][0]["podSelector"]["matchLabels"], labels)
        assert not labels_match(bus["from"][0]["podSelector"]["matchLabels"], labels)
    dns, peers = spec["egress"]
    assert dns == DEFAULT_DNS
    assert peers == {
        "ports": [{"port": 6379, "protocol": "TCP"}, {"port": 16379, "protocol": "TCP"}],
        "to": [{"podSelector": {"matchLabels": REDIS_SELECTOR}}],
    }


def test_tools_take_nothing_and_reach_redis_dns_and_the_api_only(rendered):
    spec = policies(rendered("defaults"))["tools"]["spec"]
    assert set(spec["policyTypes"]) == {"Ingress", "Egress"}
    assert spec["ingress"] == []
    redis, dns, api = spec["egress"]
    assert redis == {
        "ports": [{"port": 6379, "protocol": "TCP"}, {"port": 16379, "protocol": "TCP"}],
        "to": [{"podSelector": {"matchLabels": REDIS_SELECTOR}}],
    }
    assert dns == DEFAULT_DNS
    # Anywhere on the API server's ports by default (the values say to narrow it).
    assert api == {"ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}]}


def test_the_test_pod_reaches_the_client_port_and_dns_only(rendered):
    spec = policies(rendered("defaults"))["test"]["spec"]
    assert spec["podSelector"]["matchLabels"] == {**SELECTOR, "app.kubernetes.io/component": "test"}
    assert spec["ingress"] == []
    redis, dns = spec["egress"]
    assert redis == {
        "ports": [{"port": 6379, "protocol": "TCP"}],
        "to": [{"podSelector": {"matchLabels": REDIS_SELECTOR}}],
    }
    assert dns == DEFAULT_DNS


def test_network_policy_values_reach_every_policy(rendered):
    found = policies(rendered("network-policy"))
    client = found["redis"]["spec"]["ingress"][0]
    assert {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "my-app"}}} in client["from"]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "my-apps"}}} in client[
        "from"
    ]
    dns = {"ports": [{"port": 53, "protocol": "UDP"}], "to": [{"ipBlock": {"cidr": "169.254.20.10/32"}}]}
    for component in ("redis", "tools", "test"):
        assert dns in found[component]["spec"]["egress"], component
    assert found["tools"]["spec"]["egress"][-1] == {
        "ports": [{"port": 6443, "protocol": "TCP"}],
        "to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}],
    }


def test_policies_follow_a_custom_port(rendered):
    found = policies(rendered("5-masters-2-replicas"))
    assert {p["port"] for p in found["tools"]["spec"]["egress"][0]["ports"]} == {7000, 17000}
    assert [p["port"] for p in found["test"]["spec"]["egress"][0]["ports"]] == [7000]


# --- determinism --------------------------------------------------------------------------------------


def test_two_renders_of_the_default_values_are_byte_identical(helm):
    cmd = [helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    first, second = run(cmd), run(cmd)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    assert "\nkind: Secret\n" not in first.stdout
    assert f"name: {FULL}-init-secret" in first.stdout


def test_auth_dir_is_where_the_tools_are_told_to_look(rendered):
    env = env_of(tool_container(init_job(rendered("defaults"))))
    assert env["REDIS_CLUSTER_AUTH_DIR"] == AUTH_DIR
    assert env["REDIS_PASSWORD_FILE"].startswith(AUTH_DIR + "/")
