"""TLS on real redis-server processes, as the chart's `tls.enabled` starts them: TLS only (`port 0`),
cluster bus and replication over TLS, client certificates required. The tools (formation, verify, drill)
speak it through the command line, checking the chain and the release's name whatever address they dial."""

from __future__ import annotations

import json
import socket
import ssl

import pytest
import redis

from helm_redis.nodes import Connector
from helm_redis.tlsconfig import TlsSettings
from tests.certs import issue, make_ca
from tests.cli import assert_one_line_exit_2
from tests.cli import run_cli as run

from .helpers import ADMIN, TEST_USERS, assert_complete, views_of
from .supervision import Supervisor

pytestmark = pytest.mark.redis

# The name the chart's tools verify: the release's client Service.
SERVER_NAME = "redis.apps.svc.cluster.local"


@pytest.fixture
def tls_dir(tmp_path):
    ca = make_ca(tmp_path / "ca")
    return issue(ca, tmp_path / "tls", [SERVER_NAME, "*.redis-headless.apps.svc.cluster.local"])


@pytest.fixture
def password_file(tmp_path):
    path = tmp_path / "admin-password"
    path.write_text(ADMIN.passwords[0] + "\n")
    return path


@pytest.fixture
def tls_cluster(make_nodes, tls_dir, password_file):
    """Six TLS-only nodes with the chart's users, formed by the `init` command over TLS."""
    nodes = make_nodes(6, users=TEST_USERS, tls=TlsSettings.from_directory(tls_dir, SERVER_NAME))
    done = run(
        "init", "--nodes", nodes.nodes_option(), "--masters", "3", "--replicas-per-master", "1",
        *_login(password_file, tls_dir), "-o", "json", timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return nodes


def _login(password_file, tls_dir, server_name: str = SERVER_NAME) -> list[str]:
    return [
        "--user", "admin", "--password-file", str(password_file),
        "--tls-dir", str(tls_dir), "--tls-server-name", server_name,
    ]  # fmt: skip


def test_the_tools_form_over_tls_and_bus_and_replication_run_on_it(tls_cluster):
    assert_complete(tls_cluster, 3, 1, login=ADMIN)
    views = views_of(tls_cluster, ADMIN)
    replicas = [v for v in views if v.myself.is_replica]
    assert replicas and all(v.replication["master_link_status"] == "up" for v in replicas)
    client = tls_cluster.nodes[0].client()
    settings = {
        name: client.config_get(name)[name] for name in ("port", "tls-port", "tls-cluster", "tls-replication")
    }
    assert settings == {
        "port": "0",
        "tls-port": str(tls_cluster.nodes[0].port),
        "tls-cluster": "yes",
        "tls-replication": "yes",
    }


def test_plain_tcp_and_tls_without_a_client_certificate_are_refused(tls_cluster, tls_dir):
    node = tls_cluster.nodes[0]
    with pytest.raises(redis.ConnectionError):
        redis.Redis(node.ip, node.port, socket_timeout=3, socket_connect_timeout=3).ping()
    # The bus port too: a plain peer cannot even complete a connection that speaks the bus protocol.
    context = ssl.create_default_context(cafile=str(tls_dir / "ca.crt"))
    context.check_hostname = False
    with (
        pytest.raises((ssl.SSLError, ConnectionError, OSError)),
        socket.create_connection((node.ip, node.port), timeout=3) as raw,
        context.wrap_socket(raw) as tls,
    ):
        # TLS 1.3: the server's refusal of a missing client certificate arrives with the first read.
        tls.sendall(b"PING\r\n")
        assert not tls.recv(64).startswith(b"+PONG"), "a client without a certificate was served"


def test_a_certificate_without_the_release_name_is_refused(tls_cluster, tls_dir, password_file):
    wrong = Connector(ADMIN, tls=TlsSettings.from_directory(tls_dir, "redis.other.svc.cluster.local"))
    with pytest.raises(redis.ConnectionError, match=r"Hostname mismatch|certificate verify failed"):
        wrong.client(tls_cluster.addresses[0]).ping()
    wrong.close()
    done = run(
        "verify", "--nodes", tls_cluster.nodes_option(), "-r", "1", "--read-only",
        *_login(password_file, tls_dir, "redis.other.svc.cluster.local"),
    )  # fmt: skip
    assert done.returncode != 0
    assert "Traceback" not in done.stdout + done.stderr


def test_verify_over_tls_passes_and_reports_tls_on_everywhere(tls_cluster, tls_dir, password_file):
    done = run(
        "verify",
        "--nodes",
        tls_cluster.nodes_option(),
        "-r",
        "1",
        *_login(password_file, tls_dir),
        "-o",
        "json",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert checks["tls"]["status"] == "pass", checks["tls"]
    assert checks["auth-required"]["status"] == "pass"


def test_crash_drill_over_tls_loses_no_acknowledged_write(tls_cluster, tls_dir, password_file):
    with Supervisor(tls_cluster):
        done = run(
            "drill", "--nodes", tls_cluster.nodes_option(), "-r", "1", "--mode", "crash",
            *_login(password_file, tls_dir), "-o", "json", timeout=240,
        )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    print(
        f"\n[tls] crash drill: promotion {report['promotion_seconds']:.2f} s, "
        f"acknowledged {report['writes']['acknowledged']}, lost {report['writes']['lost_acknowledged']}"
    )
    assert report["ok"] is True
    assert report["writes"]["acknowledged"] > 0
    assert report["writes"]["lost_acknowledged"] == 0


def test_a_tls_directory_without_its_files_is_one_line(tmp_path, password_file):
    (tmp_path / "empty").mkdir()
    line = assert_one_line_exit_2(
        run("verify", "--nodes", "127.0.0.1:1", "--tls-dir", str(tmp_path / "empty"), "--read-only")
    )
    assert "ca.crt, tls.crt, tls.key" in line and "--tls-dir" in line
    line = assert_one_line_exit_2(run("verify", "--nodes", "127.0.0.1:1", "--tls-server-name", "x.example"))
    assert "--tls-dir" in line
