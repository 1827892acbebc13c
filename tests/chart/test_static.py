"""Static checks of the chart: Kubernetes schemas, linters, the values schema, the docs, determinism."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from .chartlib import (
    CHART,
    INVALID,
    NAMESPACE,
    RELEASE,
    REPO,
    SCENARIOS,
    merged_values,
    refusal,
    run,
    scenario_file,
    scenario_values,
    template_cmd,
    tool,
    tool_env,
)

pytestmark = pytest.mark.chart

# kubernetes-validate 1.37.0 ships schemas for 1.25..1.37, so both targets exist exactly.
KUBERNETES_VERSIONS = ["1.30.0", "1.34.0"]


# --- every rendered object against the Kubernetes API schemas ---------------------------------------


def test_kubernetes_validate_ships_the_target_versions():
    assert set(KUBERNETES_VERSIONS) <= set(kubernetes_validate.utils.all_versions())


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_object_is_valid_kubernetes_in_strict_mode(rendered, scenario, version):
    objs = rendered(scenario)
    assert objs
    for obj in objs:
        if obj["apiVersion"] == "cert-manager.io/v1":
            continue  # not a Kubernetes API kind: test_tls.py checks the Certificate field by field
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_strict_validation_catches_a_misplaced_field(rendered, version):
    """The validator really is strict: one unknown field in a rendered StatefulSet is refused."""
    sts = copy.deepcopy(next(o for o in rendered("defaults") if o["kind"] == "StatefulSet"))
    sts["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(sts, version, strict=True)


# --- linters -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("helm_name", ["helm", "helm3"])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_helm_lint_strict_passes(helm_name, scenario):
    result = run([tool(helm_name), "lint", "--strict", str(CHART), "--values", str(scenario_file(scenario))])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


def _ct_env(helm_name: str, shim_dir: Path) -> dict[str, str]:
    """ct calls `helm`: put the wanted Helm first on PATH under that name."""
    shim_dir.mkdir(parents=True, exist_ok=True)
    (shim_dir / "helm").unlink(missing_ok=True)
    (shim_dir / "helm").symlink_to(tool(helm_name))
    env = tool_env()
    env["PATH"] = os.pathsep.join([str(shim_dir), env["PATH"]])
    return env


@pytest.mark.parametrize("helm_name", ["helm", "helm3"])
def test_ct_lint_all_passes_with_the_repo_config(helm_name, tmp_path):
    env = _ct_env(helm_name, tmp_path / "shim")
    version = run(["helm", "version", "--short"], env=env).stdout
    assert version.startswith("v4." if helm_name == "helm" else "v3.")
    result = run([tool("ct"), "lint", "--all", "--config", "ci/ct.yaml"], env=env)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "All charts linted successfully" in out
    # ct ran helm lint with every scenario file.
    for scenario in SCENARIOS:
        assert f"{scenario}-values.yaml" in out


def test_ct_lint_needs_no_git_remote(tmp_path):
    """A fresh copy of the repository without git or a remote lints the same way."""
    work = tmp_path / "clone"
    shutil.copytree(CHART, work / "charts" / "redis-cluster")
    (work / "ci").mkdir()
    for name in ("ct.yaml", "lintconf.yaml", "chart_schema.yaml"):
        shutil.copy(REPO / "ci" / name, work / "ci" / name)
    result = run(
        [tool("ct"), "lint", "--all", "--config", "ci/ct.yaml"],
        cwd=work,
        env=_ct_env("helm", tmp_path / "shim"),
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ct_lint_fails_on_a_bad_chart_yaml(tmp_path):
    """The repo's chart_schema.yaml is in force: a Chart.yaml without maintainers is refused."""
    work = tmp_path / "clone"
    shutil.copytree(CHART, work / "charts" / "redis-cluster")
    chart_yaml = work / "charts" / "redis-cluster" / "Chart.yaml"
    meta = yaml.safe_load(chart_yaml.read_text())
    del meta["maintainers"]
    chart_yaml.write_text(yaml.safe_dump(meta))
    (work / "ci").mkdir()
    for name in ("ct.yaml", "lintconf.yaml", "chart_schema.yaml"):
        shutil.copy(REPO / "ci" / name, work / "ci" / name)
    result = run(
        [tool("ct"), "lint", "--all", "--config", "ci/ct.yaml"],
        cwd=work,
        env=_ct_env("helm", tmp_path / "shim"),
    )
    assert result.returncode != 0
    assert "maintainers" in result.stdout + result.stderr


def test_scenario_and_invalid_values_files_pass_yamllint():
    files = [str(p) for p in sorted((CHART / "ci").glob("*.yaml"))] + [str(p) for p in INVALID]
    result = run([str(REPO / ".venv" / "bin" / "yamllint"), "--strict", "-c", "ci/lintconf.yaml", *files])
    assert result.returncode == 0, result.stdout + result.stderr


# --- values.schema.json ------------------------------------------------------------------------------


def _schema() -> dict:
    return json.loads((CHART / "values.schema.json").read_text())


def _nodes(node: dict, path: str = ""):
    yield path, node
    for key, child in node.get("properties", {}).items():
        yield from _nodes(child, f"{path}.{key}" if path else key)
    if isinstance(node.get("items"), dict):
        yield from _nodes(node["items"], f"{path}[]")
    for key in ("if", "then", "else"):
        if key in node:
            yield from _nodes(node[key], f"{path}<{key}>")


def test_values_schema_is_draft7_and_self_contained():
    schema = _schema()
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(schema)
    assert '"$ref"' not in json.dumps(schema), "no references: the schema stands alone"


def test_values_schema_closes_every_object_and_describes_every_value():
    for path, node in _nodes(_schema()):
        if "<" in path:  # if/then fragments only add constraints
            continue
        if "properties" in node:
            assert node.get("additionalProperties") is False, f"{path or '<root>'} allows unknown keys"
        if path and not path.endswith("[]"):
            assert node.get("type"), f"{path} has no type"
            assert node.get("description"), f"{path} has no description"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_defaults_and_scenarios_satisfy_the_schema(scenario):
    jsonschema.Draft7Validator(_schema()).validate(merged_values(scenario_values(scenario)))


# --- refusals ----------------------------------------------------------------------------------------


def test_there_are_at_least_ten_invalid_values_files():
    assert len(INVALID) >= 10


@pytest.mark.parametrize("helm_name", ["helm", "helm3"])
@pytest.mark.parametrize("values_file", INVALID, ids=lambda p: p.stem)
def test_invalid_values_are_refused_naming_the_key(helm_name, values_file):
    keys = [
        line.split(":", 1)[1].strip()
        for line in values_file.read_text().splitlines()
        if line.startswith("# refused:")
    ]
    assert keys, f"{values_file.name} must say which key it breaks (# refused: KEY)"
    stderr = refusal(values_file, helm_name=helm_name)
    for key in keys:
        assert key in stderr, f"refusal of {values_file.name} does not name {key}:\n{stderr}"


# --- determinism, notes, docs ------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rendering_is_byte_identical_twice(helm, scenario):
    cmd = template_cmd(helm, scenario_file(scenario))
    first, second = run(cmd), run(cmd)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    assert first.stdout.count("\nkind: ") >= 7


FORBIDDEN = re.compile(
    r"\b(lookup|randAlphaNum|randAlpha|randNumeric|randAscii|randBytes|uuidv4|genCA|"
    r"genPrivateKey|genSelfSignedCert|now|date)\b"
)


def test_chart_uses_no_lookup_and_no_random_or_time_values():
    """Argo CD renders with `helm template`: nothing may depend on the cluster, chance or the clock."""
    for template in (CHART / "templates").rglob("*"):
        if template.is_file():
            text = re.sub(r"{{-?\s*/\*.*?\*/\s*-?}}", "", template.read_text(), flags=re.S)
            for action in re.findall(r"{{(.*?)}}", text, flags=re.S):
                assert not FORBIDDEN.search(action), f"{template.name}: {{{{{action}}}}}"


def _notes(helm: str, *values: str) -> str:
    cmd = [helm, "install", RELEASE, str(CHART), "--dry-run=client", "--namespace", NAMESPACE]
    for v in values:
        cmd += ["--values", str(scenario_file(v))]
    result = run(cmd)
    assert result.returncode == 0, result.stderr
    return result.stdout.split("NOTES:", 1)[1]


def test_notes_tell_how_to_connect_and_verify(helm):
    notes = _notes(helm, "defaults")
    assert f"redis-redis-cluster.{NAMESPACE}.svc.cluster.local:6379" in notes
    assert f"helm redis verify {RELEASE} --namespace {NAMESPACE}" in notes
    assert "WARNING" not in notes


def test_notes_name_the_engines_cli(helm):
    assert "redis-cli -c" in _notes(helm, "defaults")
    valkey = _notes(helm, "valkey")
    assert "valkey-cli -c" in valkey and "redis-cli" not in valkey


def test_notes_warn_that_emptydir_loses_node_ids(helm):
    notes = _notes(helm, "none")
    assert "WARNING: persistence.type is none" in notes and "node ID" in notes


def test_notes_show_the_node_port_and_how_to_log_in(helm):
    notes = _notes(helm, "nodeport")
    assert "NodePort" in notes and "--user app --askpass" in notes
    notes = _notes(helm, "auth-existing-secret")
    assert "Secret my-redis-auth" in notes and "jsonpath='{.data.app-password}'" in notes


@pytest.mark.parametrize("scenario", ["defaults", "auth-existing-secret", "nodeport"])
def test_notes_log_in_from_files_or_a_prompt_never_from_a_pod_spec_or_argv(helm, scenario):
    notes = _notes(helm, scenario)
    assert f"kubectl port-forward --namespace {NAMESPACE} svc/redis-redis-cluster 6379:" in notes
    assert "redis-cli -c -p 6379 --user app --askpass" in notes
    assert 'sh -c \'REDISCLI_AUTH="$(head -n1 /etc/redis-auth/app-password)" redis-cli --user app -c' in notes
    assert "--env" not in notes and "kubectl run" not in notes and " -a " not in notes
    assert "WARNING" not in notes


def test_notes_warn_loudly_when_auth_is_off(helm):
    notes = _notes(helm, "auth-disabled")
    assert "WARNING: auth.enabled is false" in notes
    assert "FLUSHALL" in notes and "CONFIG SET" in notes and "SHUTDOWN" in notes
    assert "--askpass" not in notes and "REDISCLI_AUTH" not in notes


def test_notes_say_the_network_policy_admits_only_the_release(helm):
    assert "networkPolicy.clientSources" in _notes(helm, "defaults")


def test_chart_readme_values_table_is_fresh():
    result = run([sys.executable, "ci/chart_docs.py", "--check", "charts/redis-cluster"])
    assert result.returncode == 0, result.stderr
    readme = (CHART / "README.md").read_text()
    for key in ("`cluster.masters`", "`persistence.nfs.server`", "`hook.waitTimeoutSeconds`"):
        assert key in readme


def test_chart_docs_check_fails_on_a_stale_readme(tmp_path):
    chart = tmp_path / "redis-cluster"
    shutil.copytree(CHART, chart)
    values = chart / "values.yaml"
    values.write_text(values.read_text().replace("# -- Number of masters", "# -- How many masters"))
    result = run([sys.executable, "ci/chart_docs.py", "--check", str(chart)])
    assert result.returncode == 1
    assert "README.md is stale" in result.stderr and "values.schema.json is stale" in result.stderr
    assert run([sys.executable, "ci/chart_docs.py", str(chart)]).returncode == 0
    assert "How many masters" in (chart / "README.md").read_text()
    assert run([sys.executable, "ci/chart_docs.py", "--check", str(chart)]).returncode == 0


def test_chart_docs_refuses_an_undocumented_value(tmp_path):
    chart = tmp_path / "redis-cluster"
    shutil.copytree(CHART, chart)
    values = chart / "values.yaml"
    values.write_text(values.read_text() + "undocumented: 1\n")
    result = run([sys.executable, "ci/chart_docs.py", "--check", str(chart)])
    assert result.returncode == 2
    assert "undocumented has no '# --' description" in result.stderr


def test_a_release_name_too_long_for_the_statefulset_is_refused_naming_the_fix(helm):
    release = "a-release-name-long-enough-to-overflow"  # + "-redis-cluster" = 52 + 1 characters
    result = run([helm, "template", release + "x", str(CHART), "--namespace", NAMESPACE])
    assert result.returncode != 0
    assert "fullnameOverride" in result.stderr and "52" in result.stderr
    assert run([helm, "template", release, str(CHART), "--namespace", NAMESPACE]).returncode == 0
