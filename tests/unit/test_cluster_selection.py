"""`make test` touches only the cluster it was given: the local one (ci/k8s) by default, another one only
when RCH_TEST_KUBECONFIG and RCH_TEST_CONTEXT name it. An implicit kubeconfig (KUBECONFIG, ~/.kube/config)
is never used, nor even contacted: every kubeconfig here points at a port this test holds open with a
listening socket that records every connection, and no test may see one."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests import kube

ROOT = Path(__file__).resolve().parents[2]
SELECT = ROOT / "ci" / "select-cluster.sh"
K8S_VERSION = next(
    line.split("=", 1)[1].strip()
    for line in (ROOT / "ci" / "versions.env").read_text().splitlines()
    if line.startswith("K8S_VERSION=")
)


class Listener:
    """A socket listening on loopback that counts the connections it accepts (closing them at once)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    sock = Listener()
    yield sock
    sock.close()


def kubeconfig(path: Path, port: int, *contexts: str) -> Path:
    """A kubeconfig whose contexts all reach 127.0.0.1:port; the first one is the current context."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": c,
                        "cluster": {"server": f"https://127.0.0.1:{port}", "insecure-skip-tls-verify": True},
                    }
                    for c in contexts
                ],
                "users": [{"name": c, "user": {"token": f"token-{c}"}} for c in contexts],
                "contexts": [{"name": c, "context": {"cluster": c, "user": c}} for c in contexts],
                "current-context": contexts[0],
            }
        )
    )
    return path


@pytest.fixture
def implicit(tmp_path: Path, listener: Listener, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An environment whose KUBECONFIG and ~/.kube/config both name the listener, a cache without a running
    local cluster, no explicit variable, and a kubectl on PATH (so that a use would be a contact)."""
    k8s_bin = kube.cache_dir() / f"k8s-{K8S_VERSION}" / "bin"  # the real one: its kubectl, if built
    home = tmp_path / "home"
    kubeconfig(home / ".kube" / "config", listener.port, "home-context")
    for key in list(os.environ):
        if key.startswith(("KUBE", "HELM_KUBE", "RCH_TEST_", "XDG_CACHE")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv(
        "KUBECONFIG", str(kubeconfig(tmp_path / "implicit.kubeconfig", listener.port, "implicit"))
    )
    monkeypatch.setenv("RCH_CACHE", str(tmp_path / "cache"))
    path = os.environ.get("PATH", "")
    if (k8s_bin / "kubectl").exists():
        path = f"{k8s_bin}{os.pathsep}{path}"
    monkeypatch.setenv("PATH", path)
    return dict(os.environ)


def select(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SELECT), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def fake_local_cluster(cache: Path, admin: Path) -> subprocess.Popen:
    """What ci/k8s/env.sh takes for a running local cluster: a live process recorded as its kube-apiserver
    and a non-empty admin kubeconfig."""
    proc = subprocess.Popen(["sleep", "60"])
    pids = cache / f"k8s-{K8S_VERSION}" / "state" / "pids"
    pids.mkdir(parents=True)
    (pids / "kube-apiserver.pid").write_text(f"{proc.pid} {os.readlink(f'/proc/{proc.pid}/exe')} spec\n")
    return proc


def test_cluster_env_refuses_an_implicit_kubeconfig_without_contacting_it(implicit, listener):
    """No local cluster, no explicit variable: the suites stop with one line, and the cluster of
    KUBECONFIG (or ~/.kube/config) never sees a connection."""
    with pytest.raises(RuntimeError) as refused:
        kube.cluster_env("rch-selection-test-")
    message = str(refused.value)
    assert listener.connections == 0, f"the implicit kubeconfig was contacted ({message})"
    assert "\n" not in message.strip()
    assert "RCH_TEST_KUBECONFIG" in message and "make k8s-up" in message


def test_the_script_refuses_an_implicit_kubeconfig_in_one_line(implicit, listener):
    done = select(implicit)
    assert done.returncode != 0
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "RCH_TEST_KUBECONFIG" in done.stderr
    assert listener.connections == 0


def test_the_local_cluster_wins_over_an_implicit_kubeconfig(implicit, listener, tmp_path):
    cache = Path(implicit["RCH_CACHE"])
    admin = kubeconfig(cache / f"k8s-{K8S_VERSION}" / "admin.kubeconfig", listener.port, "local")
    proc = fake_local_cluster(cache, admin)
    try:
        done = select(implicit)
        assert done.returncode == 0, done.stderr
        assert f"export KUBECONFIG={admin}" in done.stdout.splitlines()
        selected = kube.select_cluster(tmp_path / "selected")
        assert selected["KUBECONFIG"] == str(admin)
    finally:
        proc.kill()
        proc.wait()
    assert listener.connections == 0


@pytest.mark.parametrize("given", ["RCH_TEST_KUBECONFIG", "RCH_TEST_CONTEXT"])
def test_one_explicit_variable_without_the_other_is_refused(implicit, listener, tmp_path, given):
    env = {**implicit, given: str(kubeconfig(tmp_path / "explicit", listener.port, "a"))}
    done = select(env)
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "RCH_TEST_KUBECONFIG" in done.stderr and "RCH_TEST_CONTEXT" in done.stderr
    assert listener.connections == 0


def test_an_explicit_context_is_the_only_one_the_tests_get(implicit, listener, tmp_path):
    """RCH_TEST_KUBECONFIG + RCH_TEST_CONTEXT: a kubeconfig holding only that context (not the file's
    current one) is written where asked and exported; nothing is contacted while choosing."""
    given = kubeconfig(tmp_path / "explicit.kubeconfig", listener.port, "current-one", "chosen")
    env = {**implicit, "RCH_TEST_KUBECONFIG": str(given), "RCH_TEST_CONTEXT": "chosen"}
    done = select(env, str(tmp_path / "out"))
    if not shutil.which("kubectl", path=implicit["PATH"]):
        # Without kubectl the context cannot be extracted: refused in one line, still without a contact.
        assert done.returncode != 0 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    else:
        assert done.returncode == 0, done.stderr
        exported = dict(
            line.removeprefix("export ").split("=", 1)
            for line in done.stdout.splitlines()
            if line.startswith("export ")
        )
        written = Path(exported["KUBECONFIG"])
        assert written.parent == tmp_path / "out"
        assert oct(written.stat().st_mode & 0o777) == oct(0o600)
        config = yaml.safe_load(written.read_text())
        assert [c["name"] for c in config["contexts"]] == ["chosen"]
        assert config["current-context"] == "chosen"
        assert [u["user"]["token"] for u in config["users"]] == ["token-chosen"]
        # An unknown context is refused in one line.
        missing = select({**env, "RCH_TEST_CONTEXT": "nope"}, str(tmp_path / "out2"))
        assert missing.returncode != 0 and len(missing.stderr.strip().splitlines()) == 1, missing.stderr
    assert listener.connections == 0
