"""The failover controller's objects (issue 16): on by default, off by value; one Deployment of the tools
image running `failover-controller`, Ready only while its pod watch works, with a ServiceAccount that may
only read and watch pods, and the tools' NetworkPolicy around it."""

from __future__ import annotations

import pytest

from .chartlib import labels_match, merged_values, of_kind, scenario_values
from .test_render import FULL, sts_of, tool, tools_env, tools_image

pytestmark = pytest.mark.chart
ON = {"failoverController": {"enabled": True}}


def _component(objs, kind: str, component: str) -> list[dict]:
    return [
        o for o in of_kind(objs, kind) if o["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]


def test_on_by_default_and_off_by_value(rendered, renderer):
    on = rendered("defaults")
    off = renderer.render(
        merged_values({**scenario_values("defaults"), "failoverController": {"enabled": False}})
    )
    for kind in ("Deployment", "ServiceAccount", "Role", "RoleBinding"):
        assert len(_component(on, kind, "failover")) == 1, kind
        assert not _component(off, kind, "failover"), kind


def test_enabled_runs_one_watching_pod_with_the_tools_env(renderer):
    values = merged_values({**scenario_values("defaults"), **ON})
    objs = renderer.render(values)
    (deployment,) = _component(objs, "Deployment", "failover")
    assert deployment["metadata"]["name"] == f"{FULL}-failover"
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}, "never two controllers at once"
    c = tool(deployment)
    assert c["args"] == ["failover-controller"]
    assert c["image"] == tools_image(values)
    assert c["env"][-1] == {"name": "REDIS_CLUSTER_READY_FILE", "value": "/tmp/watching"}
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"][:-1]}
    assert env == tools_env(objs, values)
    assert c["readinessProbe"]["exec"]["command"] == ["test", "-f", "/tmp/watching"]
    assert c["resources"] == values["failoverController"]["resources"]
    spec = deployment["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == f"{FULL}-failover"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "failover"
    redis_labels = sts_of(objs)["spec"]["template"]["metadata"]["labels"]
    assert not labels_match(deployment["spec"]["selector"]["matchLabels"], redis_labels)


def test_its_account_may_only_read_and_watch_pods(renderer):
    objs = renderer.render(merged_values({**scenario_values("defaults"), **ON}))
    (role,) = _component(objs, "Role", "failover")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    (binding,) = _component(objs, "RoleBinding", "failover")
    (account,) = _component(objs, "ServiceAccount", "failover")
    assert binding["roleRef"]["name"] == role["metadata"]["name"] == account["metadata"]["name"]
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": account["metadata"]["namespace"],
        }
    ]


def test_the_tools_network_policy_covers_it_even_with_the_hook_and_reconciler_off(renderer):
    off = {"hook": {"enabled": False}, "reconciler": {"enabled": False}, "auth": {"enabled": False}}
    objs = renderer.render(merged_values({**scenario_values("defaults"), **ON, **off}))
    (policy,) = [p for p in of_kind(objs, "NetworkPolicy") if p["metadata"]["name"].endswith("-tools")]
    (expression,) = policy["spec"]["podSelector"]["matchExpressions"]
    assert "failover" in expression["values"]
    assert policy["spec"]["ingress"] == []
