"""TLS (tls.*): what the chart renders for it and what it refuses. Rendered like test_render.py (release
"redis" in namespace redis-ns). The scripts' behaviour over TLS is in test_tls_scripts.py."""

from __future__ import annotations

import json

import pytest

from .chartlib import NAMESPACE, SCENARIOS, container, env_of, merged_values, of_kind, one, scenario_values
from .test_auth import containers_of, pod_specs, policies
from .test_render import (
    FULL,
    HEADLESS,
    TLS_DIR,
    TLS_MOUNT,
    init_job,
    reconciler_of,
    redis_conf,
    scale_in_job,
    secret_job,
    sts_of,
    tls_env,
    tls_volume,
)
from .test_static import _notes

pytestmark = pytest.mark.chart

EXISTING = {"tls": {"enabled": True, "existingSecret": "my-redis-tls"}}
CERT_MANAGER = {"tls": {"enabled": True, "certManager": {"issuerRef": {"name": "my-ca"}}}}
TLS_SCENARIOS = [s for s in SCENARIOS if merged_values(scenario_values(s))["tls"]["enabled"]]


def render(renderer, overrides: dict) -> list[dict]:
    return renderer.render(merged_values(overrides))


def clients(objs) -> list[tuple[dict, dict, dict]]:
    """(object, pod spec, container) of every container that talks to Redis: the Redis pods' redis and
    prepare, the hook Jobs (the Secret Job too), the reconciler and the helm test pod."""
    out = []
    for obj in objs:
        for spec in pod_specs(obj):
            for c in spec["containers"] + spec.get("initContainers", []):
                if c["name"] not in ("volume-permissions", "engine-version"):  # they talk to no node
                    out.append((obj, spec, c))
    return out


# --- off by default -----------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s not in TLS_SCENARIOS])
def test_without_tls_nothing_mounts_or_names_it(rendered, scenario):
    objs = rendered(scenario)
    assert not of_kind(objs, "Certificate")
    for obj, spec, c in clients(objs):
        assert "tls" not in {v["name"] for v in spec.get("volumes", [])}, obj["metadata"]["name"]
        assert not [k for k in env_of(c) if k.startswith("REDIS_TLS")], (obj["metadata"]["name"], c["name"])
    conf = redis_conf(objs, sts_of(objs)["metadata"]["name"])
    assert not [line for line in conf if line.startswith("tls-")]


def test_the_tls_scenarios_cover_a_secret_and_cert_manager():
    sources = {
        "secret" if merged_values(scenario_values(s))["tls"]["existingSecret"] else "cert-manager"
        for s in TLS_SCENARIOS
    }
    assert sources == {"secret", "cert-manager"}


# --- every client speaks TLS, with the whole Secret mounted -------------------------------------------


@pytest.mark.parametrize("scenario", TLS_SCENARIOS)
def test_every_client_of_the_nodes_mounts_the_tls_secret_and_is_told_where(rendered, scenario):
    objs = rendered(scenario)
    values = merged_values(scenario_values(scenario))
    found = clients(objs)
    names = {(o["kind"], c["name"]) for o, _, c in found}
    assert names == {
        ("StatefulSet", "redis"),
        ("StatefulSet", "prepare"),
        ("Job", "cluster-init"),
        ("Job", "cluster-scale-in"),
        ("Job", "auth-secret"),
        ("Deployment", "reconciler"),
        ("Deployment", "failover"),
        ("Pod", "redis-cli"),
    }
    for obj, spec, c in found:
        where = f"{obj['kind']} {obj['metadata']['name']} {c['name']}"
        env = env_of(c)
        assert {k: env.get(k) for k in tls_env(values)} == tls_env(values), where
        (mount,) = [m for m in c["volumeMounts"] if m["name"] == "tls"]
        assert mount == TLS_MOUNT, f"{where}: read-only, whole (no subPath: it would never see a renewal)"
        component = spec.get("containers")[0]["name"]
        # Only the Jobs that run before the release's objects exist start without the Secret.
        optional = component in ("cluster-scale-in", "auth-secret")
        assert tls_volume(values, optional=optional) in spec["volumes"], where
    for obj in objs:
        for c in containers_of(obj):
            assert not [m for m in c.get("volumeMounts", []) if "subPath" in m], obj["metadata"]["name"]


def test_the_server_name_follows_the_release_namespace_and_domain(renderer):
    objs = renderer.render(
        merged_values({**EXISTING, "clusterDomain": "example.internal", "fullnameOverride": "cache"}),
        namespace="apps",
    )
    for _, _, c in clients(objs):
        assert env_of(c)["REDIS_TLS_SERVER_NAME"] == "cache.apps.svc.example.internal"
        assert env_of(c)["REDIS_TLS_DIR"] == TLS_DIR


def test_an_existing_secret_is_mounted_and_no_certificate_is_rendered(renderer):
    objs = render(renderer, EXISTING)
    assert not of_kind(objs, "Certificate")
    spec = sts_of(objs)["spec"]["template"]["spec"]
    (volume,) = [v for v in spec["volumes"] if v["name"] == "tls"]
    assert volume == {"name": "tls", "secret": {"secretName": "my-redis-tls", "defaultMode": 0o440}}


# --- redis.conf ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("auth_clients", ["yes", "optional", "no"])
def test_redis_conf_moves_clients_to_tls_on_the_same_port(renderer, auth_clients):
    objs = render(renderer, {"tls": {**EXISTING["tls"], "authClients": auth_clients}})
    conf = redis_conf(objs)
    tls_lines = [line for line in conf if line.startswith(("port ", "tls-"))]
    assert tls_lines == [
        "port 0",
        "tls-port 6379",
        "tls-cluster yes",
        "tls-replication yes",
        "tls-cert-file /etc/redis-tls/tls.crt",
        "tls-key-file /etc/redis-tls/tls.key",
        "tls-ca-cert-file /etc/redis-tls/ca.crt",
        f"tls-auth-clients {auth_clients}",
    ]
    # The ports every other object uses are unchanged: clients on redis.port, the bus on +10000.
    redis = container(sts_of(objs)["spec"]["template"]["spec"], "redis")
    assert {p["name"]: p["containerPort"] for p in redis["ports"]} == {"redis": 6379, "redis-bus": 16379}
    assert env_of(redis)["REDIS_PORT"] == "6379"
    access = one(objs, "Service", FULL)
    assert [(p["port"], p["targetPort"]) for p in access["spec"]["ports"]] == [(6379, "redis")]


def test_tls_on_a_custom_port_keeps_it(rendered):
    objs = rendered("tls-cert-manager")
    conf = redis_conf(objs)
    assert "tls-port 7000" in conf and "port 0" in conf and "tls-auth-clients optional" in conf


def test_turning_tls_on_rolls_the_pods(renderer):
    def checksum(values):
        sts = sts_of(render(renderer, values))
        return sts["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert checksum({}) != checksum(EXISTING)
    assert checksum(EXISTING) != checksum({"tls": {**EXISTING["tls"], "authClients": "optional"}})


# --- plain TCP beside TLS -----------------------------------------------------------------------------


def test_a_plain_port_is_served_published_and_admitted_like_the_client_port(rendered):
    objs = rendered("tls")
    values = merged_values(scenario_values("tls"))
    plain = values["tls"]["plainPort"]
    conf = redis_conf(objs)
    assert f"port {plain}" in conf and "tls-port 6379" in conf
    redis = container(sts_of(objs)["spec"]["template"]["spec"], "redis")
    assert {"name": "redis-plain", "containerPort": plain, "protocol": "TCP"} in redis["ports"]
    access = one(objs, "Service", FULL)
    assert {"name": "redis-plain", "port": plain, "targetPort": "redis-plain", "protocol": "TCP"} in access[
        "spec"
    ]["ports"]
    headless = one(objs, "Service", HEADLESS)
    assert "redis-plain" not in {p["targetPort"] for p in headless["spec"]["ports"]}, "peers speak TLS"
    client = policies(objs)["redis"]["spec"]["ingress"][0]
    assert client["ports"] == [
        {"port": "redis", "protocol": "TCP"},
        {"port": "redis-plain", "protocol": "TCP"},
    ]
    assert client["from"][1:] == values["networkPolicy"]["clientSources"]


def test_tls_only_has_no_plain_port_anywhere(rendered):
    objs = rendered("tls-cert-manager")
    assert "redis-plain" not in json.dumps(objs)


def test_a_plain_port_without_tls_changes_nothing(renderer):
    objs = render(renderer, {"tls": {"plainPort": 6380}})
    assert "redis-plain" not in json.dumps(objs)
    assert "port 6379" in redis_conf(objs)


# --- the cert-manager Certificate ---------------------------------------------------------------------


def test_cert_manager_certificate_has_every_name_and_both_usages(rendered):
    objs = rendered("tls-cert-manager")
    cert = one(objs, "Certificate", f"{FULL}-tls")
    assert cert["apiVersion"] == "cert-manager.io/v1"
    assert cert["metadata"]["namespace"] == NAMESPACE
    assert "helm.sh/hook" not in cert["metadata"].get("annotations", {}), (
        "a normal resource, also for Argo CD"
    )
    domain = "example.internal"
    assert cert["spec"] == {
        "secretName": f"{FULL}-tls",
        "issuerRef": {"name": "my-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"},
        "duration": "720h",
        "renewBefore": "240h",
        "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
        "usages": ["server auth", "client auth", "digital signature", "key encipherment"],
        "dnsNames": [
            FULL,
            f"{FULL}.{NAMESPACE}",
            f"{FULL}.{NAMESPACE}.svc",
            f"{FULL}.{NAMESPACE}.svc.{domain}",
            f"*.{HEADLESS}.{NAMESPACE}.svc.{domain}",
            f"*.{HEADLESS}.{NAMESPACE}.svc",
            "localhost",
        ],
        "ipAddresses": ["127.0.0.1"],
    }
    # The name the tools verify is on it, and every pod mounts the Secret it writes.
    (_, _, redis) = next(x for x in clients(objs) if x[2]["name"] == "redis")
    assert env_of(redis)["REDIS_TLS_SERVER_NAME"] in cert["spec"]["dnsNames"]
    values = merged_values(scenario_values("tls-cert-manager"))
    for obj in [sts_of(objs), init_job(objs), reconciler_of(objs), one(objs, "Pod")]:
        assert tls_volume(values) in pod_specs(obj)[0]["volumes"]
    for job in (scale_in_job(objs), secret_job(objs)):
        assert tls_volume(values, optional=True) in pod_specs(job)[0]["volumes"]


def test_cert_manager_issuer_defaults_and_a_custom_group(renderer):
    cert = one(render(renderer, CERT_MANAGER), "Certificate")
    assert cert["spec"]["issuerRef"] == {"name": "my-ca", "kind": "Issuer", "group": "cert-manager.io"}
    assert (cert["spec"]["duration"], cert["spec"]["renewBefore"]) == ("2160h", "360h")
    custom = {"name": "pca", "kind": "AWSPCAClusterIssuer", "group": "awspca.cert-manager.io"}
    values = {"tls": {"enabled": True, "certManager": {"issuerRef": custom}}}
    assert one(render(renderer, values), "Certificate")["spec"]["issuerRef"] == custom


def test_no_certificate_while_tls_is_off(renderer):
    assert not of_kind(
        render(renderer, {"tls": {"certManager": {"issuerRef": {"name": "my-ca"}}}}), "Certificate"
    )


# --- refusals -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("helm_name", ["helm", "helm3"])
def test_tls_needs_a_certificate_source(refused, helm_name):
    err = refused("tls:\n  enabled: true\n", helm_name=helm_name)
    for key in ("tls.enabled", "tls.existingSecret", "tls.certManager.issuerRef", "clientAuth"):
        assert key in err


def test_tls_takes_one_certificate_source(refused):
    err = refused(
        "tls:\n  enabled: true\n  existingSecret: mine\n  certManager:\n    issuerRef:\n      name: my-ca\n"
    )
    assert "tls.existingSecret (mine) and tls.certManager.issuerRef.name (my-ca)" in err
    assert "redis-redis-cluster-tls" in err


@pytest.mark.parametrize(
    ("port", "plain", "which"), [(6379, 6379, "6379"), (6379, 16379, "16379"), (7000, 17000, "17000")]
)
def test_a_plain_port_on_the_client_or_bus_port_is_refused(refused, port, plain, which):
    err = refused(
        f"redis:\n  port: {port}\ntls:\n  enabled: true\n  existingSecret: s\n  plainPort: {plain}\n"
    )
    assert f"tls.plainPort ({plain})" in err and "redis.port" in err and which in err


@pytest.mark.parametrize("plain", [-1, 65536])
def test_a_plain_port_out_of_range_is_refused(refused, plain):
    values = f"tls:\n  enabled: true\n  existingSecret: s\n  plainPort: {plain}\n"
    assert "/tls/plainPort" in refused(values)
    assert "tls.plainPort" in refused(values, "--skip-schema-validation")


@pytest.mark.parametrize("value", ["maybe", "true", "yes\n  extra: 1"])
def test_auth_clients_is_yes_optional_or_no(refused, value):
    err = refused(f"tls:\n  enabled: true\n  existingSecret: s\n  authClients: {value}\n")
    assert "/tls" in err


def test_auth_clients_is_checked_without_the_schema_too(refused):
    err = refused(
        'tls:\n  enabled: true\n  existingSecret: s\n  authClients: "maybe"\n', "--skip-schema-validation"
    )
    assert 'tls.authClients is "maybe"' in err and "optional" in err


@pytest.mark.parametrize(
    "values",
    [
        "tls:\n  enabled: true\n  existingSecret: Not_A_Name\n",
        "tls:\n  enabled: true\n  certManager:\n    issuerRef:\n      name: ca\n      namespace: x\n",
        "tls:\n  enabled: true\n  certManager:\n    issuerRef:\n      name: ca\n    duration: 90 days\n",
        "tls:\n  enabled: true\n  existingSecret: s\n  secretName: s\n",
    ],
    ids=["secret-name", "issuer-key", "duration", "unknown-key"],
)
def test_the_schema_refuses_malformed_tls_values(refused, values):
    assert "/tls" in refused(values)


# --- NOTES --------------------------------------------------------------------------------------------


def test_notes_connect_over_tls_without_a_password_in_the_command(helm):
    notes = _notes(helm, "tls")
    assert "port 6379 speaks TLS only, and plain TCP is still served on port 6380" in notes
    assert "Secret my-redis-tls" in notes and "must show a client certificate" in notes
    assert "jsonpath='{.data.ca\\.crt}' | base64 -d > ca.crt" in notes
    assert (
        "redis-cli -c -p 6379 --tls --cacert ca.crt --cert tls.crt --key tls.key --user app --askpass"
        in notes
    )
    pod_flags = (
        "--tls --cacert /etc/redis-tls/ca.crt --cert /etc/redis-tls/tls.crt --key /etc/redis-tls/tls.key"
    )
    assert f"redis-cli {pod_flags} --user app -c -p 6379" in notes
    assert " -a " not in notes and "--pass" not in notes and "kubectl run" not in notes
    assert f"The name on the nodes' certificate is {FULL}.{NAMESPACE}.svc.cluster.local" in notes


def test_notes_of_cert_manager_name_its_secret_and_say_tls_only(helm):
    notes = _notes(helm, "tls-cert-manager")
    assert f"Secret {FULL}-tls (issued by cert-manager)" in notes
    assert "(no plain TCP: tls.plainPort is 0)" in notes
    assert "a client certificate, when shown, must be signed by it" in notes


def test_notes_without_tls_say_nothing_of_it(helm):
    notes = _notes(helm, "defaults")
    assert "--tls" not in notes and "TLS" not in notes
