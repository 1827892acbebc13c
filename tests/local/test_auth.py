"""Authentication on real redis-server processes: the ACL users the pods start with (from the include the
start step writes), the tools logging in as `admin`, replication as `replication`, a live password
rotation under write load, and the security posture verify reports."""

from __future__ import annotations

import stat
import threading
import time

import pytest
import redis

from helm_redis.credentials import AppUser, Credentials, UserSet, read_passwords
from helm_redis.errors import PasswordFileError
from helm_redis.health import Expectation
from helm_redis.nodes import Connector
from helm_redis.users import apply_users
from helm_redis.verify import verify
from tests.cli import assert_one_line_exit_2
from tests.cli import run_cli as run

from .helpers import ADMIN, TEST_USERS, assert_complete, cluster_client, form, views_of, wait_for

APP = AppUser("app", "~* &* +@all -@dangerous")


@pytest.fixture
def secured(make_nodes):
    """Six nodes started with the chart's users, formed by the tools as `admin`."""
    nodes = make_nodes(6, users=TEST_USERS)
    form(nodes, 3, 1, login=ADMIN, timeout=60)
    return nodes


def _login(nodes, user: str | None, password: str | None) -> redis.Redis:
    node = nodes.nodes[0]
    return redis.Redis(node.ip, node.port, username=user, password=password, socket_timeout=5)


def test_a_connection_that_does_not_log_in_is_refused(secured):
    with pytest.raises(redis.AuthenticationError):
        _login(secured, None, None).ping()
    with pytest.raises(redis.AuthenticationError):
        _login(secured, "admin", "not-the-password").ping()
    with pytest.raises(redis.AuthenticationError):  # `default` is off: a bare AUTH has no user to match
        _login(secured, None, "admin-pw").ping()


def test_the_tools_form_and_replicas_sync_as_the_replication_user(secured):
    assert_complete(secured, 3, 1, login=ADMIN)
    replicas = [v for v in views_of(secured, ADMIN) if v.myself.is_replica]
    assert replicas and all(v.replication["master_link_status"] == "up" for v in replicas)


def test_the_application_user_reads_and_writes_but_cannot_flush_or_reconfigure(secured):
    cluster = cluster_client(secured, Credentials("app", ("app-pw",)))
    cluster.set("probe", "1")
    assert cluster.get("probe") == "1"
    cluster.close()
    client = _login(secured, "app", "app-pw")
    for command in (("FLUSHALL",), ("CONFIG", "SET", "maxmemory", "1"), ("CLUSTER", "RESET"), ("SHUTDOWN",)):
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.execute_command(*command)


def test_the_node_keeps_no_clear_text_password_but_the_replication_login(secured):
    include = secured.nodes[0].directory / "auth.conf"
    text = include.read_text()
    assert stat.S_IMODE(include.stat().st_mode) == 0o600
    assert "admin-pw" not in text and "app-pw" not in text
    assert [line for line in text.splitlines() if "replication-pw" in line] == ['masterauth "replication-pw"']
    assert "user default reset off" in text


def test_the_start_step_writes_the_include_from_password_files(tmp_path):
    secret = tmp_path / "secret"
    secret.mkdir()
    for user, password in (("admin", "a1\na0"), ("replication", "r1"), ("app", "p1")):
        (secret / f"{user}-password").write_text(password + "\n")
    users_file = tmp_path / "acl-users"
    users_file.write_text("app ~app:* +@read +@write\n")
    include = tmp_path / "run" / "auth.conf"

    done = run(
        "prepare-node",
        "--nodes-conf",
        str(tmp_path / "nodes.conf"),
        "--auth-dir",
        str(secret),
        "--app-users",
        str(users_file),
        "--auth-include",
        str(include),
    )

    assert done.returncode == 0, done.stderr
    lines = include.read_text().splitlines()
    admin = next(line for line in lines if line.startswith("user admin "))
    assert admin.count("#") == 2  # both passwords of the rotation, hashed
    assert any(
        line.startswith("user app reset on #") and line.endswith("~app:* +@read +@write") for line in lines
    )
    for password in ("a1", "a0", "p1"):
        assert f" {password}" not in include.read_text()
    assert "a1" not in done.stdout + done.stderr


def test_an_empty_password_file_is_refused_in_one_line(tmp_path):
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "admin-password").write_text("\n")
    (secret / "replication-password").write_text("r1\n")

    line = assert_one_line_exit_2(
        run(
            "prepare-node",
            "--nodes-conf",
            str(tmp_path / "nodes.conf"),
            "--auth-dir",
            str(secret),
            "--auth-include",
            str(tmp_path / "auth.conf"),
        )
    )

    assert "admin-password is empty" in line
    assert not (tmp_path / "auth.conf").exists()
    with pytest.raises(PasswordFileError):
        read_passwords(secret / "admin-password")


def test_the_connector_logs_in_with_whichever_password_the_node_accepts(secured):
    connector = Connector(Credentials("admin", ("newer-not-applied-yet", "admin-pw")))
    try:
        assert connector.client(secured.nodes[0].address).ping()
    finally:
        connector.close()


def test_verify_reports_the_posture(secured, make_nodes):
    secure = {c.name: c.status for c in verify(Connector(ADMIN), secured.addresses, Expectation(3, 1)).checks}
    assert secure["auth-required"] == "pass"
    assert secure["default-user-off"] == "pass"
    assert secure["tls"] == "warn"  # TLS is not on for these nodes

    open_nodes = make_nodes(3)
    form(open_nodes, 3, 0, timeout=60)
    report = verify(Connector(), open_nodes.addresses, Expectation(3, 0))
    checks = {c.name: c for c in report.checks}
    assert (
        checks["auth-required"].status == "warn"
        and "answers without a login" in checks["auth-required"].detail
    )
    assert checks["default-user-off"].status == "warn"
    assert report.ok  # warnings only: an open cluster may be a choice


def test_password_rotation_under_write_load_fails_no_authenticated_write(make_nodes):
    """The documented rotation: add the new password beside the old one (applied live), move the clients,
    remove the old one. A writer logs in afresh for every batch with the password clients use at that
    moment; none of its writes may fail, and replication keeps working with the new login."""
    nodes = make_nodes(6, users=TEST_USERS)
    form(nodes, 3, 1, login=ADMIN, timeout=60)
    both = UserSet(("admin-new", "admin-pw"), ("repl-new", "replication-pw"), ((APP, ("app-new", "app-pw")),))
    new_only = UserSet(("admin-new",), ("repl-new",), ((APP, ("app-new",)),))
    client_password = {"now": "app-pw"}
    failures: list[str] = []
    writes = {"n": 0}
    stop = threading.Event()

    def writer() -> None:
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            client = redis.RedisCluster(
                host=nodes.nodes[0].ip,
                port=nodes.nodes[0].port,
                username="app",
                password=client_password["now"],
                socket_timeout=5,
            )
            try:
                for i in range(20):
                    client.set(f"rotation:{writes['n']}:{i}", "v")
                writes["n"] += 1
            except redis.RedisError as error:
                failures.append(type(error).__name__)
            finally:
                client.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.5)
        old_admin = Connector(ADMIN)
        applied = apply_users(old_admin, nodes.addresses, both)  # step 1-2: both passwords accepted
        old_admin.close()
        assert not applied.skipped
        time.sleep(0.5)
        client_password["now"] = "app-new"  # step 3: clients move
        time.sleep(0.5)
        new_admin = Connector(Credentials("admin", ("admin-new",)))
        applied = apply_users(new_admin, nodes.addresses, new_only)  # step 4-5: the old one goes
        assert not applied.skipped
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join(timeout=70)

    assert writes["n"] >= 4, writes
    assert failures == []
    with pytest.raises(redis.AuthenticationError):
        _login(nodes, "app", "app-pw").ping()
    # Replicas re-authenticate with the new login when their link drops.
    for node in nodes.nodes:
        redis.Redis(node.ip, node.port, username="admin", password="admin-new").execute_command(
            "CLIENT", "KILL", "TYPE", "replica"
        )
    login = Credentials("admin", ("admin-new",))
    wait_for(
        lambda: all(
            v.replication["master_link_status"] == "up" for v in views_of(nodes, login) if v.myself.is_replica
        ),
        timeout=20,
        what="every replica link back up with the new replication password",
    )


def test_a_long_running_connector_follows_its_password_file_through_a_rotation(secured, tmp_path):
    """The reconciler's case: its connections were made before the rotation; when one drops, it logs in
    again with what the (kubelet-updated) file says now."""
    password_file = tmp_path / "admin-password"
    password_file.write_text("admin-pw\n")
    connector = Connector(Credentials.from_file("admin", password_file))
    node = secured.nodes[0].address
    try:
        assert connector.client(node).ping()
        rotated = UserSet(("admin-new",), ("replication-pw",), ((APP, ("app-pw",)),))
        assert not apply_users(connector, secured.addresses, rotated).skipped
        password_file.write_text("admin-new\n")
        connector.client(node).execute_command("CLIENT", "KILL", "USER", "admin")  # every admin connection

        assert connector.client(node).ping()
    finally:
        connector.close()


def test_switching_authentication_on_by_a_rolling_restart_keeps_every_replica_linked(make_nodes):
    """An open cluster gets the users live first (what the pre-upgrade Job does), then every node restarts
    with them, replicas first as a rolling update would: each replica logs in to a master that may or may
    not have restarted yet, and the tools' admin login works on both kinds of node throughout."""
    nodes = make_nodes(6)
    form(nodes, 3, 1, timeout=60)
    anonymous = Connector()
    try:
        assert not apply_users(anonymous, nodes.addresses, TEST_USERS).skipped
    finally:
        anonymous.close()
    replica = {v.address: v.myself.is_replica for v in views_of(nodes)}
    order = sorted(nodes.nodes, key=lambda n: not replica[str(n.address)])
    for node in order:
        node.stop()
        node.users = TEST_USERS
        node.start()
        node.wait_ready()
        wait_for(
            lambda: all(
                v.replication["master_link_status"] == "up"
                for v in views_of(nodes, ADMIN)
                if v.myself.is_replica
            ),
            timeout=30,
            what=f"every replica linked after {node.address} restarted with authentication",
        )
    with pytest.raises(redis.AuthenticationError):
        _login(nodes, None, None).ping()
    assert_complete(nodes, 3, 1, login=ADMIN)
