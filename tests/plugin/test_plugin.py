"""The Helm plugin (helm_plugin/) under Helm 4 and Helm 3: install, help, flags and env, exit codes, the
shim's first use, reinstall, update and uninstall, and install.sh's errors."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from .conftest import VERSION, Helm, SigningKey, clean_env, copy_plugin, listed_commands, make_checkout


def installed(helm: Helm, plugin: Path):
    return helm.run("plugin", "install", str(plugin), timeout=300)


def plugin_names(helm: Helm) -> list[str]:
    listed = helm.run("plugin", "list")
    assert listed.returncode == 0, listed.stderr
    return [line.split()[0] for line in listed.stdout.splitlines()[1:] if line.strip()]


# --- install from a checkout (`helm plugin install ./helm_plugin`) ------------------------------------------


def test_install_from_a_checkout_links_the_directory_and_runs_the_install_hook(
    helm: Helm, checkout_plugin: Path
) -> None:
    done = installed(helm, checkout_plugin)

    assert done.returncode == 0, done.stderr
    assert "Installed plugin: redis" in done.stdout
    # the hook ran install.sh, which found the checkout through the symlink and its venv already made
    assert "venv up to date (the checkout" in done.stdout
    link = helm.plugins / "helm_plugin"
    assert link.is_symlink() and link.resolve() == checkout_plugin.resolve()
    assert "redis" in plugin_names(helm)


def test_help_lists_the_commands(helm: Helm, checkout_plugin: Path) -> None:
    assert installed(helm, checkout_plugin).returncode == 0

    shown = helm.run("redis", "--help")

    assert shown.returncode == 0, shown.stderr
    assert "Usage" in shown.stdout
    assert listed_commands(shown.stdout) >= {"verify", "drill", "init", "prepare-node"}, shown.stdout


def test_a_second_install_is_refused_and_the_plugin_keeps_working(helm: Helm, checkout_plugin: Path) -> None:
    assert installed(helm, checkout_plugin).returncode == 0

    again = installed(helm, checkout_plugin)

    assert again.returncode != 0
    assert "plugin already exists" in again.stderr
    assert helm.run("redis", "--help").returncode == 0


def test_update_of_a_directory_install_is_not_supported_by_helm(helm: Helm, checkout_plugin: Path) -> None:
    # Helm updates only plugins it cloned with git; a linked directory "is auto-updated" (and install.sh
    # installs a checkout editable, so the plugin already runs the checkout's current code).
    assert installed(helm, checkout_plugin).returncode == 0

    updated = helm.run("plugin", "update", "redis")

    assert updated.returncode != 0
    assert "cannot get information about plugin source" in updated.stderr.lower()
    assert helm.run("redis", "--help").returncode == 0


def test_uninstall_removes_the_link_and_leaves_the_checkout(helm: Helm, checkout_plugin: Path) -> None:
    assert installed(helm, checkout_plugin).returncode == 0

    removed = helm.run("plugin", "uninstall", "redis")

    assert removed.returncode == 0, removed.stderr
    assert "redis" not in plugin_names(helm)
    assert not (helm.plugins / "helm_plugin").exists()
    assert (checkout_plugin / "plugin.yaml").is_file()
    assert (checkout_plugin / "venv" / "bin" / "helm-redis").is_file()  # reused by the next install


# --- what reaches helm-redis --------------------------------------------------------------------------------


def test_helm_flags_arrive_as_environment_and_other_arguments_unchanged(
    helm: Helm, fake_venv_plugin: Callable[[Helm], Path]
) -> None:
    plugin = fake_venv_plugin(helm)
    kubeconfig = str(helm.home / "other-kubeconfig")

    ran = helm.run(
        "-n", "some-ns", "--kube-context", "ctx-1", "redis", "verify", "my-release",
        "--output", "json", "--kubeconfig", kubeconfig, "--debug", "--nodes", "a:1,b:2",
    )  # fmt: skip

    assert ran.returncode == 0, ran.stderr
    seen = json.loads(ran.stdout)
    assert seen["argv"] == ["verify", "my-release", "--output", "json", "--nodes", "a:1,b:2"]
    assert seen["env"] == {
        "HELM_NAMESPACE": "some-ns",
        "HELM_KUBECONTEXT": "ctx-1",
        "KUBECONFIG": kubeconfig,
        "HELM_DEBUG": "true",
        "HELM_PLUGIN_DIR": str(plugin),
        "HELM_PLUGIN_NAME": "redis",
    }


def test_namespace_defaults_to_default_without_flags(
    helm: Helm, fake_venv_plugin: Callable[[Helm], Path]
) -> None:
    fake_venv_plugin(helm)

    ran = helm.run("redis", "verify", "r")

    assert ran.returncode == 0, ran.stderr
    env = json.loads(ran.stdout)["env"]
    assert env["HELM_NAMESPACE"] == "default"
    assert env["HELM_DEBUG"] == "false"


def test_exit_codes_of_helm_redis_are_helms_exit_codes(
    helm: Helm, fake_venv_plugin: Callable[[Helm], Path]
) -> None:
    fake_venv_plugin(helm)

    codes = [helm.run("redis", "verify", "r", "exit", str(code)).returncode for code in (0, 1, 2)]

    assert codes == [0, 1, 2]


# --- the shim and install.sh without Helm's hooks -----------------------------------------------------------


def test_shim_creates_the_venv_on_first_use_when_no_hook_ran(helm4: Helm, project_wheel: Path) -> None:
    # A plugin copied into the plugins directory by hand (no `helm plugin install`, so no install hook), not
    # in a checkout: the shim makes the venv from HELM_REDIS_PACKAGE, then runs the command.
    plugin = copy_plugin(helm4.plugins / "redis")
    assert not (plugin / "venv").exists()

    ran = helm4.run("redis", "--help", timeout=300, HELM_REDIS_PACKAGE=str(project_wheel))

    assert ran.returncode == 0, ran.stderr
    assert "creating it (once)" in ran.stderr
    assert "Usage" in ran.stdout and "prepare-node" in ran.stdout
    assert "helm redis:" not in ran.stdout  # install.sh's chatter stays off stdout (--output json)
    again = helm4.run("redis", "--help", HELM_REDIS_PACKAGE=str(project_wheel))
    assert again.returncode == 0 and "creating" not in again.stderr


def test_install_script_is_idempotent(checkout_plugin: Path) -> None:
    venv_python = checkout_plugin / "venv" / "bin" / "python"
    before = venv_python.lstat().st_mtime_ns

    rerun = subprocess.run(
        [str(checkout_plugin / "install.sh")], env=clean_env(), capture_output=True, text=True, check=False
    )

    assert rerun.returncode == 0, rerun.stderr
    assert "nothing to do" in rerun.stdout
    assert venv_python.lstat().st_mtime_ns == before


def test_unpublished_package_fails_the_hook_with_one_clear_line(
    helm4: Helm, signing_key: SigningKey, tmp_path: Path
) -> None:
    # A package without the bundled wheel (helm_plugin/ packaged as it is, not by ci/plugin/package.sh),
    # extracted by Helm 4 (a copy, not a checkout): install.sh falls back to the PyPI name, which is not
    # published yet. The index is replaced by an empty directory to keep the test offline.
    empty = tmp_path / "empty-index"
    empty.mkdir()
    packaged = helm4.run(
        "plugin", "package", str(copy_plugin(tmp_path / "redis")), "-d", str(tmp_path),
        "--key", signing_key.name, "--keyring", str(signing_key.secring),
    )  # fmt: skip
    assert packaged.returncode == 0, packaged.stderr

    done = helm4.run(
        "plugin", "install", str(tmp_path / f"redis-{VERSION}.tgz"), "--keyring", str(signing_key.pubring),
        timeout=300, PIP_NO_INDEX="1", PIP_FIND_LINKS=str(empty),
    )  # fmt: skip

    assert done.returncode != 0
    assert "Plugin Hash Verified" in done.stdout  # verified, then the hook failed
    errors = [line for line in done.stderr.splitlines() if line.startswith("helm redis: error:")]
    assert len(errors) == 1
    assert "redis-cluster-helm is not on the package index (not published yet)" in errors[0]
    assert "HELM_REDIS_PACKAGE" in errors[0]


def test_install_script_prefers_the_checkout_to_a_bundled_wheel(tmp_path: Path, project_wheel: Path) -> None:
    # Order: HELM_REDIS_PACKAGE, the checkout, the bundled wheel, the PyPI name. pip is kept offline, so
    # the editable install fails fast after install.sh has said what it installs.
    plugin = make_checkout(tmp_path / "checkout")
    (plugin / "wheels").mkdir()
    shutil.copy(project_wheel, plugin / "wheels")
    empty = tmp_path / "empty-index"
    empty.mkdir()
    offline = clean_env(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(empty))

    def chosen(**extra: str) -> str:
        done = subprocess.run(
            [str(plugin / "install.sh")], env={**offline, **extra}, capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip
        return next(line for line in done.stdout.splitlines() if line.startswith("helm redis: installing"))

    assert "installing the checkout" in chosen()
    assert "(HELM_REDIS_PACKAGE)" in chosen(HELM_REDIS_PACKAGE="redis-cluster-helm==0.0.0")
    (plugin.parent / "pyproject.toml").unlink()  # a link: the repository's own file stays
    assert f"installing the bundled wheel wheels/{project_wheel.name}" in chosen()


def test_install_script_without_python_311_says_so(tmp_path: Path) -> None:
    plugin = copy_plugin(tmp_path / "redis")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("dirname", "cksum", "grep", "cat", "rm", "tail", "sed"):
        (bin_dir / name).symlink_to(shutil.which(name) or name)
    old = bin_dir / "python3"
    old.write_text("#!/bin/sh\nexit 1\n")  # any Python older than 3.11 fails install.sh's version check
    old.chmod(0o755)

    done = subprocess.run(
        ["/bin/sh", str(plugin / "install.sh")],
        env=clean_env(PATH=str(bin_dir)),
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "helm redis: error: no Python >= 3.11 found (tried python3, python3.13, python3.12, python3.11); "
        "install one or set HELM_REDIS_PYTHON"
    ]
    assert not (plugin / "venv").exists()
