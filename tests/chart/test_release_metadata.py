"""Release metadata agrees with itself: one version everywhere, CHANGELOG.md and the Artifact Hub annotations
of Chart.yaml, the images a default install runs, and the release workflow. Fast: no cluster, one render."""

from __future__ import annotations

import re
import tomllib
from typing import Any

import pytest
import yaml

from .chartlib import CHART, REPO, Renderer, images_of

pytestmark = pytest.mark.chart

# semver.org's regular expression (2.0.0), without the named groups
SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
# Keep a Changelog headings -> Artifact Hub change kinds
KINDS = {h: h.lower() for h in ("Added", "Changed", "Deprecated", "Removed", "Fixed", "Security")}
WORKFLOW = REPO / ".github" / "workflows" / "release.yaml"


def chart() -> dict[str, Any]:
    return yaml.safe_load((CHART / "Chart.yaml").read_text())


def annotation(key: str) -> Any:
    """An Artifact Hub annotation, whose value is itself YAML."""
    annotations = chart().get("annotations") or {}
    assert key in annotations, f"Chart.yaml has no annotation {key}"
    return yaml.safe_load(annotations[key])


def one_line(text: str) -> str:
    return " ".join(text.split())


def changelog() -> list[tuple[str, list[dict[str, str]]]]:
    """(version, [{kind, description}]) per `## [version]` section of CHANGELOG.md, newest first; a bullet
    wrapped over several lines is one description. `## [Unreleased]` is left out."""
    sections: list[tuple[str, list[dict[str, str]]]] = []
    kind = None
    for line in (REPO / "CHANGELOG.md").read_text().splitlines():
        if m := re.match(r"^## \[([^\]]+)\]", line):
            sections.append((m[1], []))
            kind = None
        elif m := re.match(r"^### (.+?)\s*$", line):
            assert m[1] in KINDS, f"CHANGELOG.md: unknown heading {line!r} (one of {', '.join(KINDS)})"
            kind = KINDS[m[1]]
        elif not sections or kind is None:
            continue
        elif line.startswith("- "):
            sections[-1][1].append({"kind": kind, "description": line[2:]})
        elif line.startswith("  ") and line.strip() and sections[-1][1]:
            sections[-1][1][-1]["description"] += " " + line.strip()
        elif line.strip():
            kind = None  # any other text (a paragraph, link definitions) ends the list
    return [
        (v, [{**c, "description": one_line(c["description"])} for c in cs])
        for v, cs in sections
        if v != "Unreleased"
    ]


def default_images(renderer: Renderer) -> set[str]:
    """Every container and init container image of what a default install creates (hooks and test pod too)."""
    return images_of(renderer.render({}))


def workflow() -> dict[str, Any]:
    return yaml.safe_load(WORKFLOW.read_text())


def run_scripts(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job.get("steps", []))


# --- versions ----------------------------------------------------------------------------------------------


def test_chart_version_is_semver():
    version = chart()["version"]
    assert isinstance(version, str) and SEMVER.match(version), f"Chart.yaml version {version!r} is not SemVer"


def test_one_version_for_the_tools_the_package_and_the_plugin():
    """appVersion (the tools image's default tag) == pyproject version == every plugin.yaml version."""
    app = chart()["appVersion"]
    assert isinstance(app, str), "appVersion must be a quoted string"
    found = {"pyproject.toml": tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]}
    for path in ("helm_plugin/plugin.yaml", "helm_plugin/plugin.v1.yaml", "plugin.yaml"):
        if (REPO / path).exists():
            found[path] = str(yaml.safe_load((REPO / path).read_text())["version"])
    assert "helm_plugin/plugin.yaml" in found
    assert found == dict.fromkeys(found, app), f"Chart.yaml appVersion is {app}"


# --- CHANGELOG and Artifact Hub ----------------------------------------------------------------------------


def test_changelog_newest_section_is_the_chart_version():
    sections = changelog()
    assert sections, "CHANGELOG.md has no `## [version]` section"
    versions = [v for v, _ in sections]
    assert versions[0] == chart()["version"], f"newest CHANGELOG.md section {versions[0]}"
    assert len(set(versions)) == len(versions), f"a version appears twice: {versions}"
    assert all(changes for _, changes in sections), "a CHANGELOG.md section lists no change"


def test_artifacthub_changes_are_the_changelog_newest_section():
    changes = annotation("artifacthub.io/changes")
    assert isinstance(changes, list) and all(isinstance(c, dict) for c in changes)
    for c in changes:
        assert set(c) <= {"kind", "description", "links"}, c
        assert c["kind"] in KINDS.values(), c
    got = [{"kind": c["kind"], "description": one_line(c["description"])} for c in changes]
    assert got == changelog()[0][1], "regenerate artifacthub.io/changes from CHANGELOG.md's newest section"


def test_artifacthub_images_are_what_a_default_install_runs(renderer: Renderer):
    images = annotation("artifacthub.io/images")
    names = [i["name"] for i in images]
    assert len(set(names)) == len(names), names
    listed = {i["image"] for i in images}
    rendered = default_images(renderer)
    assert listed == rendered, (
        f"artifacthub.io/images lists {sorted(listed)}, the chart runs {sorted(rendered)}"
    )
    for ref in rendered:  # never an implicit :latest
        assert re.search(r":[\w][\w.-]*(@sha256:[0-9a-f]{64})?$", ref.rsplit("/", 1)[-1]), ref


def test_artifacthub_metadata():
    meta = chart()
    annotations = meta["annotations"]
    assert annotations["artifacthub.io/license"] == "Apache-2.0"
    assert annotations["artifacthub.io/category"] == "database"
    links = annotation("artifacthub.io/links")
    assert links and all(
        set(link) == {"name", "url"} and link["url"].startswith("https://") for link in links
    )
    assert meta["home"].startswith("https://") and meta["sources"]
    assert all(isinstance(v, str) for v in annotations.values()), "annotation values must be strings"


# --- the release workflow ----------------------------------------------------------------------------------


def test_release_workflow_builds_with_the_ci_scripts():
    wf = workflow()
    on = wf.get("on", wf.get(True))  # YAML 1.1 reads the key `on` as true
    assert on["push"]["tags"] == ["v*"]
    jobs = wf["jobs"]
    scripts = {name: run_scripts(job) for name, job in jobs.items()}
    builders = [n for n, s in scripts.items() if "ci/images/build.sh tools" in s]
    assert builders, "no job builds the tools image with ci/images/build.sh"
    for name in builders:
        arches = {leg["arch"] for leg in jobs[name]["strategy"]["matrix"]["include"]}
        assert arches == {"amd64", "arm64"}, arches
    assert any("ci/plugin/package.sh" in s for s in scripts.values()), "no job runs ci/plugin/package.sh"
    assert (REPO / "ci" / "images" / "build.sh").exists() and (REPO / "ci" / "plugin" / "package.sh").exists()
    assert any("Chart.yaml" in s and "GITHUB_REF_NAME" in s for s in scripts.values()), "no tag check"


def test_release_workflow_publishes_the_chart_defaults():
    """The workflow pushes the tools image where values.yaml pulls it from."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert workflow()["env"]["TOOLS_REPO"] == values["tools"]["image"]["repository"]


def test_release_workflow_actions_are_pinned():
    for name, job in workflow()["jobs"].items():
        for step in job.get("steps", []):
            if "uses" in step:
                ref = step["uses"].rsplit("@", 1)
                pinned = len(ref) == 2 and re.match(r"^(v\d+(\.\d+)*|[0-9a-f]{40})$", ref[1])
                assert pinned, f"job {name}: {step['uses']} is not pinned to a version or commit"
