"""The release workflow run locally (ci/release/dry-run.sh) against the test cluster's registry
(RCH_REGISTRY), under a path prefix of this run only: tools image pushed by digest, one-arch index tagged with
the chart's appVersion, SPDX SBOM by syft, cosign signatures and SBOM attestation with a key pair of this
run, the chart pushed and signed, everything verified with the public key. Then a tag is moved to another
image and verification must fail. Only the registry is touched (no pods); what was pushed is deleted."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.kube import CHART, ROOT, cluster_env

pytestmark = pytest.mark.e2e

DRY_RUN = ROOT / "ci" / "release" / "dry-run.sh"
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


@dataclass
class DryRun:
    env: dict[str, str]
    out: Path
    release: dict
    password: str
    output: str  # the dry run's stdout and stderr

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=600)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done

    def cosign_verify(self, ref: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.run(
            "cosign",
            *extra or ("verify",),
            "--key",
            str(self.out / "cosign.pub"),
            "--insecure-ignore-tlog",
            "--allow-http-registry",
            "--allow-insecure-registry",
            ref,
            check=False,
        )


def _request(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, method=method, headers={"Accept": MANIFEST_TYPES})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), b""


def delete_repository(registry: str, repository: str) -> int:
    """Every manifest of REPOSITORY reachable from its tags, their index children and their referrers
    (cosign's signatures and attestations), deleted (the registry runs with storage.delete.enabled)."""
    base = f"http://{registry}/v2/{repository}"
    status, _, body = _request(f"{base}/tags/list")
    tags = (json.loads(body).get("tags") or []) if status == 200 else []
    todo, seen = [], set()
    for tag in tags:
        status, headers, _ = _request(f"{base}/manifests/{tag}", "HEAD")
        if status == 200:
            todo.append(headers["Docker-Content-Digest"])
        if tag.startswith("sha256-"):  # cosign's referrers tag: its subject may be untagged by now
            todo.append(tag.replace("-", ":", 1))
    while todo:
        digest = todo.pop()
        if digest in seen:
            continue
        seen.add(digest)
        status, _, body = _request(f"{base}/manifests/{digest}")
        if status == 200:
            todo += [m["digest"] for m in json.loads(body).get("manifests", [])]
        status, _, body = _request(f"{base}/referrers/{digest}")
        if status == 200:
            todo += [m["digest"] for m in json.loads(body).get("manifests", [])]
    deleted = 0
    for digest in seen:
        status, _, _ = _request(f"{base}/manifests/{digest}", "DELETE")
        deleted += status == 202
    status, _, body = _request(f"{base}/tags/list")
    left = (json.loads(body).get("tags") or []) if status == 200 else []
    assert not left, f"{repository}: tags left after the cleanup: {left}"
    return deleted


@pytest.fixture(scope="module")
def dry_run() -> Iterator[DryRun]:
    env, helm_home = cluster_env("rch-release-helm-")
    registry = env.get("RCH_REGISTRY")
    if not registry:
        shutil.rmtree(helm_home, ignore_errors=True)
        raise RuntimeError("RCH_REGISTRY is not set: the local cluster's ci/k8s/env.sh exports it")
    prefix = f"rch-test/release-{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix="rch-release-"))
    password = secrets.token_hex(24)
    password_file = work / "password"
    password_file.touch(mode=0o600)
    password_file.write_text(password)
    out = work / "out"
    try:
        done = subprocess.run(
            [str(DRY_RUN), registry, "--prefix", prefix, "--out", str(out)],
            env={**env, "COSIGN_PASSWORD_FILE": str(password_file)},
            capture_output=True,
            text=True,
            timeout=3600,
        )
        output = done.stdout + done.stderr
        print(f"\n{output}")
        assert done.returncode == 0, f"ci/release/dry-run.sh exited {done.returncode}:\n{output}"
        release = json.loads((out / "release.json").read_text())
        yield DryRun(env, out, release, password, output)
    finally:
        for repository in (f"{prefix}/tools", f"{prefix}/charts/redis-cluster"):
            print(f"[release] deleted {delete_repository(registry, repository)} manifests of {repository}")
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(helm_home, ignore_errors=True)


def test_pushed_where_asked_with_the_chart_versions(dry_run: DryRun):
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    release = dry_run.release
    prefix = f"{dry_run.env['RCH_REGISTRY']}/{release['prefix']}"
    assert release["tools_repo"] == f"{prefix}/tools"
    assert release["chart_repo"] == f"{prefix}/charts/redis-cluster"
    assert (release["app_version"], release["chart_version"]) == (chart["appVersion"], chart["version"])
    index = json.loads(
        dry_run.run("crane", "manifest", f"{release['tools_repo']}:{release['app_version']}").stdout
    )
    assert [m["digest"] for m in index["manifests"]] == [release["image_digest"]]
    assert index["manifests"][0]["platform"]["architecture"] == release["arch"]
    served = dry_run.run("crane", "digest", f"{release['chart_repo']}:{release['chart_version']}").stdout
    assert served.strip() == release["chart_digest"]


def test_sbom_lists_the_project_and_python(dry_run: DryRun):
    sbom = json.loads(Path(dry_run.release["sbom"]).read_text())
    assert sbom["spdxVersion"].startswith("SPDX-")
    packages = {(p["name"], p.get("versionInfo")) for p in sbom["packages"]}
    assert ("redis-cluster-helm", "0.2.0") in packages, sorted(n for n, _ in packages)
    assert any(name == "python3" for name, _ in packages), sorted(n for n, _ in packages)


def test_signatures_and_attestation_verify_with_the_public_key(dry_run: DryRun):
    release = dry_run.release
    refs = [
        f"{release['tools_repo']}:{release['app_version']}",
        f"{release['tools_repo']}@{release['image_digest']}",
        f"{release['chart_repo']}:{release['chart_version']}",
    ]
    for ref in refs:
        done = dry_run.cosign_verify(ref)
        assert done.returncode == 0, f"cosign verify {ref}:\n{done.stderr}"
    ref = f"{release['tools_repo']}@{release['image_digest']}"
    done = dry_run.cosign_verify(ref, "verify-attestation", "--type", "spdxjson")
    assert done.returncode == 0, f"cosign verify-attestation {ref}:\n{done.stderr}"


def test_secrets_stay_out_of_logs_and_output(dry_run: DryRun):
    assert dry_run.password not in dry_run.output
    for path in dry_run.out.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            assert dry_run.password not in text, path
            assert "ENCRYPTED SIGSTORE PRIVATE KEY" not in text, path


def test_a_tag_moved_to_another_image_fails_verification(dry_run: DryRun, tmp_path: Path):
    """Last: it overwrites the signed tags (the image's and the chart's) with an unsigned image."""
    layer = tmp_path / "layer.tar"
    payload = tmp_path / "tampered"
    payload.write_text(f"not the release {uuid.uuid4()}\n")
    with tarfile.open(layer, "w") as tar:
        tar.add(payload, arcname="tampered")
    release = dry_run.release
    for ref, signed in (
        (f"{release['tools_repo']}:{release['app_version']}", release["index_digest"]),
        (f"{release['chart_repo']}:{release['chart_version']}", release["chart_digest"]),
    ):
        assert dry_run.cosign_verify(ref).returncode == 0
        dry_run.run("crane", "append", "-f", str(layer), "-t", ref)
        assert dry_run.run("crane", "digest", ref).stdout.strip() != signed
        done = dry_run.cosign_verify(ref)
        assert done.returncode != 0, f"cosign verify passed on a tampered {ref}:\n{done.stdout}"
        assert "no signatures found" in done.stderr.lower() or "no matching" in done.stderr.lower(), (
            done.stderr
        )
        # the signed digest itself still verifies
        ref_by_digest = f"{ref.rsplit(':', 1)[0]}@{signed}"
        assert dry_run.cosign_verify(ref_by_digest).returncode == 0
