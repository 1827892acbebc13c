"""Fixtures of the Helm plugin tests: isolated Helm homes, copies of helm_plugin/, one real plugin venv,
a throwaway signing key and the plugin's release packages (ci/plugin/package.sh), an HTTP server for Helm 3.

Nothing here writes into the repository's own helm_plugin/: every test installs a copy, laid out either
as a checkout (the copy next to links to the repository's pyproject.toml and src/) or alone (a plugin
without a checkout, as Helm leaves it after a tarball or git install).
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.paths import cache_dir

REPO = Path(__file__).resolve().parents[2]
PLUGIN_SRC = REPO / "helm_plugin"
HELMS = ["helm", "helm3"]  # Helm 4 and Helm 3, both pinned in ci/versions.env
VERSION = re.search(r"^version: (\S+)$", (PLUGIN_SRC / "plugin.v1.yaml").read_text(), re.MULTILINE)[1]
KEY_NAME = "redis-cluster-helm test"


def tool(name: str) -> str:
    """A pinned tool from PATH or from the bootstrap cache; a missing tool fails the test (never a skip)."""
    cache = cache_dir() / "bin"
    found = shutil.which(name) or shutil.which(name, path=str(cache))
    if not found:
        pytest.fail(f"{name} not found on PATH nor in {cache}: run `make bootstrap` (ci/bootstrap.sh)")
    return found


def listed_commands(help_text: str) -> set[str]:
    """The commands of `helm redis --help`: rows of its Commands panel, not mere words (the description
    "Form, verify and drill ..." names two)."""
    panel = help_text[help_text.index("Commands") :]
    return set(re.findall(r"^\s*[│|]?\s?([a-z][a-z-]*)\s{2,}\S", panel, flags=re.MULTILINE))


def copy_plugin(dest: Path) -> Path:
    """A copy of helm_plugin/ (without any venv of the working tree) at dest."""
    shutil.copytree(PLUGIN_SRC, dest, ignore=shutil.ignore_patterns("venv", "__pycache__"), symlinks=True)
    return dest


def make_checkout(root: Path) -> Path:
    """A stand-in for a checkout: links to the real pyproject.toml and src/, a copy of helm_plugin/."""
    root.mkdir(parents=True)
    for name in ("pyproject.toml", "src"):
        (root / name).symlink_to(REPO / name)
    return copy_plugin(root / "helm_plugin")


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without Helm's or Kubernetes' variables, plus extra."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HELM_", "KUBE")) and k not in ("VIRTUAL_ENV", "PYTHONPATH")
    }
    env.update(extra)
    return env


@dataclass
class Helm:
    """One Helm binary with its own data, config, cache and plugins directories."""

    binary: str
    home: Path

    @property
    def plugins(self) -> Path:
        # Helm 4 installs local directories under $HELM_DATA_HOME/plugins whatever HELM_PLUGINS says, and
        # loads plugins from HELM_PLUGINS: keep them the same directory, as they are by default.
        return self.home / "data" / "plugins"

    def env(self, **extra: str) -> dict[str, str]:
        return clean_env(
            HELM_DATA_HOME=str(self.home / "data"),
            HELM_CONFIG_HOME=str(self.home / "config"),
            HELM_CACHE_HOME=str(self.home / "cache"),
            HELM_PLUGINS=str(self.plugins),
            KUBECONFIG=str(self.home / "no-kubeconfig"),
            **extra,
        )

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 60, **extra: str):
        return subprocess.run(
            [self.binary, *args],
            env=env or self.env(**extra),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@pytest.fixture(params=HELMS)
def helm(request: pytest.FixtureRequest, tmp_path: Path) -> Helm:
    """Helm 4 and Helm 3 in turn, each with empty homes."""
    home = tmp_path / f"{request.param}-home"
    home.mkdir()
    return Helm(tool(request.param), home)


@pytest.fixture
def helm4(tmp_path: Path) -> Helm:
    home = tmp_path / "helm-home"
    home.mkdir()
    return Helm(tool("helm"), home)


@pytest.fixture
def helm3(tmp_path: Path) -> Helm:
    home = tmp_path / "helm3-home"
    home.mkdir()
    return Helm(tool("helm3"), home)


@dataclass
class SigningKey:
    """A throwaway OpenPGP key, as the legacy keyring files Helm reads (it cannot use gpg's keybox)."""

    name: str
    pubring: Path  # for `helm plugin install --keyring`
    secring: Path  # for `helm plugin package --keyring`


@pytest.fixture(scope="session")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SigningKey]:
    """A key made for this test session in its own GNUPGHOME, no passphrase; its gpg-agent is stopped after.

    The keyrings are `gpg --export` and `gpg --export-secret-keys` output (binary OpenPGP packets), written
    outside GNUPGHOME: a secring.gpg inside it makes the next gpg run "migrate" it into gpg-agent."""
    gpg = tool("gpg")
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    env = clean_env(GNUPGHOME=str(home))

    def run(*args: str) -> bytes:
        done = subprocess.run([gpg, "--batch", *args], env=env, capture_output=True, timeout=120, check=False)
        # gpg's stderr names the key and files, never key material; stdout (the keys) is not shown
        assert done.returncode == 0, f"gpg {args[0]} failed: {done.stderr.decode(errors='replace')}"
        return done.stdout

    rings = tmp_path_factory.mktemp("keyrings")
    try:
        uid = f"{KEY_NAME} <test@example.invalid>"
        run("--passphrase", "", "--quick-gen-key", uid, "rsa3072", "sign", "never")
        key = SigningKey(KEY_NAME, rings / "pubring.gpg", rings / "secring.gpg")
        key.pubring.write_bytes(run("--export", KEY_NAME))
        key.secring.write_bytes(
            run("--pinentry-mode", "loopback", "--passphrase", "", "--export-secret-keys", KEY_NAME)
        )
        key.secring.chmod(0o600)
        yield key
    finally:
        subprocess.run(
            [tool("gpgconf"), "--kill", "gpg-agent"], env=env, capture_output=True, timeout=30, check=False
        )


@dataclass
class Packages:
    """What ci/plugin/package.sh made: the signed Helm 4 package and the Helm 3 one."""

    helm4: Path  # redis-VERSION.tgz, its provenance file beside it
    helm3: Path  # redis-VERSION-helm3.tgz

    @property
    def prov(self) -> Path:
        return self.helm4.with_name(self.helm4.name + ".prov")


@pytest.fixture(scope="session")
def packages(tmp_path_factory: pytest.TempPathFactory, signing_key: SigningKey) -> Packages:
    """The plugin's release packages, made by ci/plugin/package.sh and signed with the session's key."""
    out = tmp_path_factory.mktemp("packages")
    done = subprocess.run(
        [str(REPO / "ci" / "plugin" / "package.sh"), str(out), "--key", signing_key.name,
         "--keyring", str(signing_key.secring)],
        env=clean_env(HELM=tool("helm"), PYTHON=sys.executable),
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    made = Packages(out / f"redis-{VERSION}.tgz", out / f"redis-{VERSION}-helm3.tgz")
    assert made.helm4.is_file() and made.prov.is_file() and made.helm3.is_file(), sorted(out.iterdir())
    return made


class _GzipHandler(http.server.SimpleHTTPRequestHandler):
    """Serves every file as application/gzip: Helm 3 installs a tarball over http(s) only with a gzip
    Content-Type (http.server's own guess for .tgz, application/x-tar, is refused)."""

    def guess_type(self, path: str | os.PathLike[str]) -> str:
        return "application/gzip"

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def serve() -> Iterator[Callable[[Path], str]]:
    """serve(file) -> its http://127.0.0.1:PORT/ URL, from a server living as long as the test."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(file: Path) -> str:
        handler = functools.partial(_GzipHandler, directory=str(file.parent))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/{file.name}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def checkout_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """helm_plugin/ of a checkout, its venv made once per session by a real run of install.sh (pip)."""
    plugin = make_checkout(tmp_path_factory.mktemp("checkout") / "redis-cluster-helm")
    done = subprocess.run(
        [str(plugin / "install.sh")],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return plugin


@pytest.fixture(scope="session")
def project_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built from the working tree (for plugins that are not in a checkout)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(REPO)],
        env=clean_env(),
        check=True,
        timeout=300,
        capture_output=True,
    )
    (wheel,) = out.glob("redis_cluster_helm-*.whl")
    return wheel


FAKE_HELM_REDIS = """#!{python}
# Test double of the venv's helm-redis: prints what it was given, exits with the code after `exit`.
import json, os, sys
keys = ("HELM_NAMESPACE", "HELM_KUBECONTEXT", "KUBECONFIG", "HELM_DEBUG",
        "HELM_PLUGIN_DIR", "HELM_PLUGIN_NAME")
print(json.dumps({{"argv": sys.argv[1:], "env": {{k: os.environ.get(k) for k in keys}}}}))
sys.exit(int(sys.argv[sys.argv.index("exit") + 1]) if "exit" in sys.argv else 0)
"""


@pytest.fixture
def fake_venv_plugin(tmp_path: Path) -> Callable[[Helm], Path]:
    """Put a copy of the plugin right into a Helm's plugins directory (no hook), with a test-double venv."""

    def place(helm: Helm) -> Path:
        plugin = copy_plugin(helm.plugins / "redis")
        bin_dir = plugin / "venv" / "bin"
        bin_dir.mkdir(parents=True)
        (bin_dir / "python").symlink_to(sys.executable)
        script = bin_dir / "helm-redis"
        script.write_text(FAKE_HELM_REDIS.format(python=sys.executable))
        script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return plugin

    return place
