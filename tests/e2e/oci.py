"""The user's install path against the local OCI registry (RCH_REGISTRY, plain HTTP on loopback): the chart
packaged and pushed as an OCI artifact, and the digests the registry serves for the images."""

from __future__ import annotations

import json
import re
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.kube import CHART

from .conftest import Cluster

# The chart's path in a registry, as the release publishes it (oci://ghcr.io/redis-cluster-helm/charts).
CHART_PATH = "redis-cluster-helm/charts"
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


@dataclass(frozen=True)
class PublishedChart:
    ref: str  # oci://HOST/redis-cluster-helm/charts/redis-cluster
    version: str
    digest: str
    package_bytes: int

    def install_args(self) -> list[str]:
        return [self.ref, "--version", self.version, "--plain-http"]


def registry_of(cluster: Cluster) -> str:
    registry = cluster.env.get("RCH_REGISTRY")
    if not registry:
        raise RuntimeError(
            "the journey installs from an OCI registry: set RCH_REGISTRY to the host:port of a plain-HTTP"
            " registry the tests may push to (the local cluster's ci/k8s/env.sh exports it)"
        )
    return registry


def publish_chart(cluster: Cluster, workdir: Path) -> PublishedChart:
    """`helm package` + `helm push`, as the release does; the digest is the one helm push reports."""
    registry = registry_of(cluster)
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
    cluster.run("helm", "package", str(CHART), "--destination", str(workdir))
    package = workdir / f"redis-cluster-{version}.tgz"
    pushed = cluster.run("helm", "push", str(package), f"oci://{registry}/{CHART_PATH}", "--plain-http")
    found = re.search(r"Digest: (sha256:[0-9a-f]{64})", pushed.stdout + pushed.stderr)
    assert found, f"helm push reported no digest:\n{pushed.stdout}\n{pushed.stderr}"
    return PublishedChart(
        f"oci://{registry}/{CHART_PATH}/redis-cluster", version, found.group(1), package.stat().st_size
    )


def _manifest(registry: str, image: str, reference: str) -> tuple[str, dict]:
    """(digest, manifest) the registry serves for IMAGE's repository at REFERENCE (a tag or a digest);
    IMAGE is host/path:tag, the host being the registry it mirrors."""
    path = image.split("/", 1)[1].rpartition(":")[0]
    request = urllib.request.Request(
        f"http://{registry}/v2/{path}/manifests/{reference}", headers={"Accept": MANIFEST_TYPES}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.headers["Docker-Content-Digest"], json.loads(response.read())


def served_digest(registry: str, image: str) -> str:
    """The manifest digest the registry serves for IMAGE's tag."""
    return _manifest(registry, image, image.rpartition(":")[2])[0]


def same_image(registry: str, image: str, digest: str) -> bool:
    """Whether the manifest DIGEST, which the registry must hold in IMAGE's repository, is the image its
    tag serves: the same manifest, or one with the same config (same layer contents, e.g. compressed
    otherwise). containerd reports the first repository digest it ever pulled for an image's config."""
    tagged = _manifest(registry, image, image.rpartition(":")[2])
    pulled = _manifest(registry, image, digest)
    return pulled[0] == tagged[0] or pulled[1]["config"]["digest"] == tagged[1]["config"]["digest"]
