"""The chart's scripts (files/*.sh, the helm test pod's script) against a real redis-server 7.0 that speaks
TLS only (`port 0`, `tls-port`, `tls-cluster yes`, `tls-auth-clients yes`) on loopback, with auth on, as a
chart node is configured with tls.enabled. Certificates are made here with the openssl CLI: a CA and node
certificates with serverAuth and clientAuth usages and SAN IP:127.0.0.1. The TLS directory is laid out like
a mounted Secret (files are symlinks through `..data`, swapped atomically by a renewal), so the readiness
probe's reload is tested the way the kubelet updates the files."""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.certs import fingerprint, issue, make_ca

from .chartlib import merged_values, one
from .test_scripts import NEW, OLD, _binary, _free_port, run_script, serving

pytestmark = [pytest.mark.chart, pytest.mark.redis]

TLS_VALUES = {"tls": {"enabled": True, "existingSecret": "my-redis-tls"}}
FILES = ("tls.crt", "tls.key", "ca.crt")


class MountedSecret:
    """A directory laid out like a Secret volume: tls.crt -> ..data/tls.crt, ..data -> ..<version>."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.mkdir()
        self.versions = 0

    def publish(self, source: Path) -> None:
        """Atomically switch the files to those of `source`, as the kubelet does on a Secret update."""
        self.versions += 1
        version = self.path / f"..v{self.versions}"
        version.mkdir()
        for name in FILES:
            (version / name).write_bytes((source / name).read_bytes())
        tmp_link = self.path / "..data_tmp"
        tmp_link.symlink_to(version.name)
        os.replace(tmp_link, self.path / "..data")
        for name in FILES:
            if not (self.path / name).is_symlink():
                (self.path / name).symlink_to(f"..data/{name}")


def served_fingerprint(port: int, tls_dir: Path) -> str:
    """SHA-256 of the certificate the node presents, over a verified, mutually authenticated handshake."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(tls_dir / "ca.crt")
    context.load_cert_chain(tls_dir / "tls.crt", tls_dir / "tls.key")
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw) as conn,
    ):
        der = conn.getpeercert(binary_form=True)
    assert der
    return hashlib.sha256(der).hexdigest()


def tls_cli(port: int, tls_dir: Path, *args: str) -> str:
    env = {**os.environ, "REDISCLI_AUTH": NEW}
    cmd = [_binary("redis-cli"), "--no-auth-warning", "--user", "admin", "-p", str(port), "--tls"]
    cmd += ["--cacert", str(tls_dir / "ca.crt"), "--cert", str(tls_dir / "tls.crt")]
    cmd += ["--key", str(tls_dir / "tls.key")]
    return subprocess.run([*cmd, *args], env=env, capture_output=True, text=True, timeout=10).stdout


def config_set_calls(port: int, tls_dir: Path) -> int:
    """CONFIG SET calls the node served (INFO commandstats: cmdstat_config|set:calls=N,...)."""
    for line in tls_cli(port, tls_dir, "info", "commandstats").splitlines():
        if line.startswith("cmdstat_config|set:"):
            return int(line.split("calls=", 1)[1].split(",", 1)[0])
    return 0


@contextmanager
def tls_redis(
    directory: Path, tls_dir: Path, cluster: bool = True, admin_rules: str = "~* &* +@all", extra: str = ""
) -> Iterator[int]:
    """A TLS-only redis-server configured like a chart node with tls.enabled and auth; yields its TLS port."""
    port = _free_port()
    digest = hashlib.sha256(NEW.encode()).hexdigest()
    conf = f"port 0\ntls-port {port}\nbind 127.0.0.1\ndir {directory}\n"
    conf += f"tls-cert-file {tls_dir}/tls.crt\ntls-key-file {tls_dir}/tls.key\n"
    conf += f"tls-ca-cert-file {tls_dir}/ca.crt\ntls-auth-clients yes\ntls-replication yes\n"
    conf += f"user default off\nuser admin on #{digest} {admin_rules}\n"
    if cluster:
        conf += f"cluster-enabled yes\ntls-cluster yes\ncluster-config-file {directory}/nodes.conf\n"
    conf += extra
    with serving(directory, conf, lambda: tls_cli(port, tls_dir, "ping").strip() == "PONG"):
        yield port


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    ca = make_ca(tmp_path / "ca")
    issue(ca, tmp_path / "first")
    issue(ca, tmp_path / "second")
    return tmp_path


@pytest.fixture
def mounted(pki: Path) -> MountedSecret:
    secret = MountedSecret(pki / "secret")
    secret.publish(pki / "first")
    return secret


@pytest.fixture
def tls_node(tmp_path: Path, mounted: MountedSecret) -> Iterator[int]:
    data = tmp_path / "data"
    data.mkdir()
    with tls_redis(data, mounted.path) as port:
        yield port


def tls_run(
    name: str, port: int, tmp_path: Path, tls_dir: Path | None, lines: str | None = f"{NEW}\n", **env
):
    """run_script with REDIS_TLS_DIR (None: not set) and the probe's state in tmp_path/probe-tmp."""
    probe_tmp = tmp_path / "probe-tmp"
    probe_tmp.mkdir(exist_ok=True)
    extra = {"TMPDIR": str(probe_tmp), **env}
    if tls_dir is not None:
        extra["REDIS_TLS_DIR"] = str(tls_dir)
    return run_script(name, port, tmp_path, lines, **extra)


def sum_file(tmp_path: Path) -> Path:
    return tmp_path / "probe-tmp" / "tls-loaded.sum"


# --- probes and preStop over TLS -----------------------------------------------------------------------


def test_readiness_over_tls_with_auth(tls_node, tmp_path, mounted):
    code, out, _ = tls_run("readiness.sh", tls_node, tmp_path, mounted.path, f"{OLD}\n{NEW}\n")
    assert (code, out) == (0, ""), "a TLS node not in a cluster yet is ready once it answers PONG"


def test_readiness_without_tls_flags_gets_no_answer_from_a_tls_only_node(tls_node, tmp_path):
    code, out, _ = tls_run("readiness.sh", tls_node, tmp_path, None)
    assert code == 1 and out.startswith("no PONG"), out


def test_liveness_over_tls(tls_node, tmp_path, mounted):
    code, out, _ = tls_run("liveness.sh", tls_node, tmp_path, mounted.path, None)
    assert (code, out) == (0, "")
    code, out, _ = tls_run("liveness.sh", tls_node, tmp_path, None, None)
    assert code == 1 and out.startswith(f"no PONG from 127.0.0.1:{tls_node}"), "plain TCP is off"


def test_prestop_over_tls_with_auth(tls_node, tmp_path, mounted):
    code, out, _ = tls_run("prestop.sh", tls_node, tmp_path, mounted.path, PRESTOP_TIMEOUT_SECONDS="5")
    assert code == 0
    assert out.strip().splitlines()[-1] == "prestop: this master serves no slots: nothing to hand over"


def test_a_master_hands_over_to_its_replica_over_the_tls_bus(tmp_path, mounted):
    """A master and its replica linked over TLS (bus and replication, mutual TLS with the one node
    certificate): both ready; the master's preStop asks the replica (over TLS, logged in) to take over."""
    dirs = [tmp_path / "master", tmp_path / "replica"]
    for d in dirs:
        d.mkdir()
    masterauth = f"masteruser admin\nmasterauth {NEW}\n"
    with (
        tls_redis(dirs[0], mounted.path, extra=masterauth) as master,
        tls_redis(dirs[1], mounted.path, extra=masterauth) as replica,
    ):
        assert tls_cli(master, mounted.path, "cluster", "addslotsrange", "0", "16383").strip() == "OK"
        assert tls_cli(replica, mounted.path, "cluster", "meet", "127.0.0.1", str(master)).strip() == "OK"
        master_id = tls_cli(master, mounted.path, "cluster", "myid").strip()
        for _ in range(100):  # gossip over the TLS bus: the replica must know the master first
            if tls_cli(replica, mounted.path, "cluster", "replicate", master_id).strip() == "OK":
                break
            time.sleep(0.1)
        else:
            pytest.fail("the replica never learned the master over the TLS bus")
        for _ in range(100):
            if "master_link_status:up" in tls_cli(replica, mounted.path, "info", "replication"):
                break
            time.sleep(0.1)
        else:
            pytest.fail("replication over TLS never came up")
        for port in (master, replica):
            for _ in range(100):
                code, out, _ = tls_run("readiness.sh", port, tmp_path, mounted.path)
                if code == 0:
                    break
                time.sleep(0.1)
            assert (code, out) == (0, ""), f"node {port} not ready over TLS"
        code, out, _ = tls_run("prestop.sh", master, tmp_path, mounted.path, PRESTOP_TIMEOUT_SECONDS="15")
        assert code == 0
        assert out.strip().splitlines()[-1].startswith(f"prestop: handed over to 127.0.0.1:{replica} in "), (
            out
        )
        assert tls_cli(master, mounted.path, "role").splitlines()[0] == "slave"
        print(f"[tls] {out.strip().splitlines()[-1]}")


def test_a_certificate_without_client_auth_usage_is_refused_as_a_client_certificate(tls_node, tmp_path, pki):
    """Why the chart's certificate needs clientAuth: the nodes and tools show it as their client certificate,
    and with `tls-auth-clients yes` a serverAuth-only one (same CA) is refused."""
    issue(pki / "ca", pki / "server-only", usages="serverAuth")
    code, out, _ = tls_run("readiness.sh", tls_node, tmp_path, pki / "server-only")
    assert code == 1 and out.startswith("no PONG"), out
    assert tls_run("readiness.sh", tls_node, tmp_path, pki / "first")[:2] == (0, "")


# --- renewal: the readiness probe reloads changed certificate files ------------------------------------


def test_readiness_reloads_a_renewed_certificate_once(tls_node, tmp_path, pki, mounted):
    first, second = (fingerprint((pki / name / "tls.crt").read_bytes()) for name in ("first", "second"))
    assert served_fingerprint(tls_node, mounted.path) == first

    # After a start there is no sum file: the first probe reloads once (harmless) and records the files.
    code, out, _ = tls_run("readiness.sh", tls_node, tmp_path, mounted.path)
    assert (code, out) == (0, "")
    assert config_set_calls(tls_node, mounted.path) == 1
    assert sum_file(tmp_path).is_file()

    mounted.publish(pki / "second")  # the kubelet's atomic swap of a renewed Secret
    assert served_fingerprint(tls_node, mounted.path) == first, "Redis 7 does not reload by itself"
    started = time.monotonic()
    code, out, _ = tls_run("readiness.sh", tls_node, tmp_path, mounted.path)
    assert (code, out) == (0, ""), "a reload prints nothing"
    assert served_fingerprint(tls_node, mounted.path) == second
    print(f"[tls] renewed certificate served {time.monotonic() - started:.2f} s after the probe started")
    assert config_set_calls(tls_node, mounted.path) == 2

    recorded = sum_file(tmp_path).read_text()
    for _ in range(3):
        assert tls_run("readiness.sh", tls_node, tmp_path, mounted.path)[:2] == (0, "")
    assert config_set_calls(tls_node, mounted.path) == 2, "unchanged files are never reloaded"
    assert sum_file(tmp_path).read_text() == recorded


def test_a_refused_reload_never_fails_readiness_and_is_retried(tmp_path, mounted):
    """CONFIG SET refused (here: an admin without +config): ready, silent, no sum kept, retried next time."""
    data = tmp_path / "data"
    data.mkdir()
    with tls_redis(data, mounted.path, admin_rules="~* &* +@all -config") as port:
        for _ in range(2):
            assert tls_run("readiness.sh", port, tmp_path, mounted.path)[:2] == (0, "")
        assert not sum_file(tmp_path).exists(), "the sum is stored only when CONFIG SET says OK"
        stats = tls_cli(port, mounted.path, "info", "commandstats")
        assert "cmdstat_config|set:calls=0,usec=0,usec_per_call=0.00,rejected_calls=2," in stats, stats


def test_an_unwritable_sum_file_never_fails_readiness_nor_prints(tls_node, tmp_path, mounted):
    nowhere = str(tmp_path / "no-such-dir")
    for _ in range(2):
        assert tls_run("readiness.sh", tls_node, tmp_path, mounted.path, TMPDIR=nowhere)[:2] == (0, "")
    assert config_set_calls(tls_node, mounted.path) == 2, "nothing kept: each probe reloads (harmless)"


def test_without_tls_the_probe_keeps_no_sum(tmp_path):
    from .test_scripts import _redis

    data = tmp_path / "data"
    data.mkdir()
    with _redis(data) as port:
        assert tls_run("readiness.sh", port, tmp_path, None)[:2] == (0, "")
    assert not sum_file(tmp_path).exists()


# --- the helm test pod ---------------------------------------------------------------------------------


def test_helm_test_pod_round_trips_over_tls(renderer, tmp_path, mounted):
    pod = one(renderer.render(merged_values(TLS_VALUES)), "Pod")
    (c,) = pod["spec"]["containers"]
    secret = tmp_path / "admin-password"
    secret.write_text(f"{OLD}\n{NEW}\n")
    data = tmp_path / "data"
    data.mkdir()
    with tls_redis(data, mounted.path, cluster=False) as port:
        env = {e["name"]: e["value"] for e in c["env"] if "value" in e}
        assert env["REDIS_TLS_DIR"] == "/etc/redis-tls"
        env |= {"PATH": os.environ["PATH"], "PODS": "0", "REDIS_PASSWORD_FILE": str(secret), "HOSTNAME": "t"}
        env |= {"ACCESS_HOST": "127.0.0.1", "ACCESS_PORT": str(port), "REDIS_TLS_DIR": str(mounted.path)}
        result = subprocess.run(
            [_binary("dash"), *c["command"][1:]], env=env, capture_output=True, text=True, timeout=60
        )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert OLD not in out and NEW not in out
    assert out.splitlines() == ["logged in as admin", f"write/read round trip through 127.0.0.1:{port} ok"]
