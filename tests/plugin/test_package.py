"""The plugin's release packages (ci/plugin/package.sh): Helm 4 installs the signed one with verification on
(no --verify=false) and refuses it tampered, unsigned or signed by a key it does not know; Helm 3 installs
the -helm3 one over http. Both plugins are outside any checkout and install the wheel they carry."""

from __future__ import annotations

import io
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import yaml

from .conftest import KEY_NAME, VERSION, Helm, Packages, SigningKey, listed_commands


def members(package: Path) -> dict[str, bytes | None]:
    """name -> content (None for a directory) of a .tgz."""
    with tarfile.open(package) as tar:
        return {m.name: (tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()}  # type: ignore[union-attr]


def plugin_list(helm: Helm) -> list[list[str]]:
    listed = helm.run("plugin", "list")
    assert listed.returncode == 0, listed.stderr
    return [line.split() for line in listed.stdout.splitlines()[1:] if line.strip()]


def assert_no_plugin(helm: Helm) -> None:
    assert plugin_list(helm) == []
    assert not list(helm.plugins.glob("*/venv")), "an install hook ran"


# --- what the packages hold ---------------------------------------------------------------------------------


def test_the_packages_hold_their_plugin_yaml_the_scripts_and_the_wheel_and_no_venv(
    packages: Packages,
) -> None:
    wheel = f"wheels/redis_cluster_helm-{VERSION}-py3-none-any.whl"
    helm4 = members(packages.helm4)  # `helm plugin package` puts everything under redis/
    helm3 = members(packages.helm3)  # Helm 3 wants plugin.yaml at the root, and no "./" entry

    assert {f"redis/{name}" for name in ("plugin.yaml", "install.sh", "bin/helm-redis", wheel)} <= set(helm4)
    assert {"plugin.yaml", "install.sh", "bin/helm-redis", wheel} <= set(helm3)
    for names in (helm4, helm3):
        assert not [n for n in names if "venv" in n or "__pycache__" in n or n.endswith("plugin.v1.yaml")]
    assert not [n for n in helm3 if n.startswith(("/", "."))]
    v1 = yaml.safe_load(helm4["redis/plugin.yaml"] or b"")
    assert (v1["apiVersion"], v1["type"], v1["runtime"], v1["version"]) == (
        "v1",
        "cli/v1",
        "subprocess",
        VERSION,
    )
    legacy = yaml.safe_load(helm3["plugin.yaml"] or b"")
    assert "apiVersion" not in legacy and legacy["version"] == VERSION
    assert helm4[f"redis/{wheel}"] == helm3[wheel]


# --- Helm 4: the signed package -----------------------------------------------------------------------------


def test_helm4_installs_the_signed_package_with_verification(
    helm4: Helm, packages: Packages, signing_key: SigningKey
) -> None:
    done = helm4.run(
        "plugin", "install", str(packages.helm4), "--keyring", str(signing_key.pubring), timeout=300
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "Verifying plugin signature..." in done.stdout
    assert f"Signed by: {KEY_NAME} <test@example.invalid>" in done.stdout
    assert "Plugin Hash Verified: sha256:" in done.stdout
    assert f"installing the bundled wheel wheels/redis_cluster_helm-{VERSION}-" in done.stdout
    assert "Installed plugin: redis" in done.stdout
    # NAME VERSION TYPE APIVERSION PROVENANCE SOURCE
    assert [row[:5] for row in plugin_list(helm4)] == [["redis", VERSION, "cli/v1", "v1", "signed"]]
    shown = helm4.run("redis", "--help")
    assert shown.returncode == 0, shown.stderr
    assert listed_commands(shown.stdout) >= {"verify", "drill"}, shown.stdout
    summary = helm4.run("help")
    assert "Verify and drill the Redis Cluster of a redis-cluster release" in summary.stdout


def test_helm4_refuses_a_tampered_package(
    helm4: Helm, packages: Packages, signing_key: SigningKey, tmp_path: Path
) -> None:
    # The same archive with one line added to install.sh, next to the original provenance file.
    tampered = tmp_path / packages.helm4.name
    with tarfile.open(packages.helm4) as src, tarfile.open(tampered, "w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
            if member.name == "redis/install.sh" and data is not None:
                data += b"echo tampered\n"
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data) if data is not None else None)
    shutil.copy(packages.prov, tmp_path)

    done = helm4.run("plugin", "install", str(tampered), "--keyring", str(signing_key.pubring))

    assert done.returncode != 0
    assert "plugin verification failed: sha256 sum does not match" in done.stderr
    assert_no_plugin(helm4)


def test_helm4_refuses_a_package_without_provenance(
    helm4: Helm, packages: Packages, signing_key: SigningKey, tmp_path: Path
) -> None:
    alone = shutil.copy(packages.helm4, tmp_path)

    done = helm4.run("plugin", "install", str(alone), "--keyring", str(signing_key.pubring))

    assert done.returncode != 0
    assert "plugin verification failed: no provenance file (.prov) found" in done.stderr
    assert_no_plugin(helm4)


def test_helm4_refuses_a_package_signed_by_a_key_not_in_the_keyring(
    helm4: Helm, packages: Packages, tmp_path: Path
) -> None:
    empty = tmp_path / "empty.gpg"
    empty.write_bytes(b"")

    done = helm4.run("plugin", "install", str(packages.helm4), "--keyring", str(empty))

    assert done.returncode != 0
    assert "plugin verification failed: openpgp: signature made by unknown entity" in done.stderr
    assert_no_plugin(helm4)


# --- Helm 3: the -helm3 package over http -------------------------------------------------------------------


def test_helm3_installs_the_helm3_package_over_http(
    helm3: Helm, packages: Packages, serve: Callable[[Path], str]
) -> None:
    # Helm 3 installs no local tarball and has no plugin signatures: the package comes over http(s).
    done = helm3.run("plugin", "install", serve(packages.helm3), timeout=300)

    assert done.returncode == 0, done.stdout + done.stderr
    assert f"installing the bundled wheel wheels/redis_cluster_helm-{VERSION}-" in done.stdout
    assert "Installed plugin: redis" in done.stdout
    assert [row[:2] for row in plugin_list(helm3)] == [["redis", VERSION]]
    shown = helm3.run("redis", "--help")
    assert shown.returncode == 0, shown.stderr
    assert listed_commands(shown.stdout) >= {"verify", "drill"}, shown.stdout
