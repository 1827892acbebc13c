"""`helm-redis`: the command line of the hook image and of the Helm plugin (`helm redis ...`).

A thin adapter: parse, check combinations, call the domain, map its outcome to an exit code
(0 all good, 1 a check or the drill failed, 2 usage or connection error, one line, no traceback).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ParamSpec

import typer

from . import output
from .credentials import (
    Credentials,
    UserSet,
    parse_app_users,
    password_key,
    password_lines,
    write_config_include,
)
from .errors import HelmRedisError, UsageError, explain
from .errors import one_line as _one_line
from .formation import Formation, FormationResult, members_from_addresses
from .health import Expectation
from .nodes import Connector, parse_node_list
from .nodesconf import prepare_node
from .plan import Member
from .tlsconfig import TlsSettings

P = ParamSpec("P")


@dataclass
class Target:
    members: list[Member]
    connector: Connector
    expected: Expectation
    release: object | None = None


def one_line_errors(command: Callable[P, None]) -> Callable[P, None]:
    """Domain errors become one line on stderr and their exit code; never a traceback.

    Errors the domain did not explain (Redis, the Kubernetes API, the network, files) become one line
    saying what failed, and exit 2 (connection error).
    """

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            command(*args, **kwargs)
        except HelmRedisError as error:
            output.stderr.print(f"error: {error}", markup=False)
            raise typer.Exit(error.exit_code) from None
        except Exception as error:
            explained = explain(error)
            if explained is None:  # a bug: its traceback is what a report needs
                raise
            output.stderr.print(f"error: {explained}", markup=False)
            raise typer.Exit(2) from None

    return wrapper


app = typer.Typer(
    name="helm-redis",
    help="Form, verify and drill the Redis Cluster of a redis-cluster Helm release.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

NodesOption = Annotated[
    str | None,
    typer.Option(
        "--nodes",
        envvar="REDIS_CLUSTER_NODES",
        help="Talk to these Redis nodes directly (HOST:PORT,HOST:PORT,...) instead of Kubernetes.",
        show_default=False,
    ),
]
UserOption = Annotated[
    str | None,
    typer.Option(
        "--user",
        envvar="REDIS_USERNAME",
        help="ACL user to log in as (the chart's tools use `admin`); needs --password-file.",
        show_default=False,
    ),
]
PasswordFileOption = Annotated[
    Path | None,
    typer.Option(
        "--password-file",
        envvar="REDIS_PASSWORD_FILE",
        help="File with the password, one per line (all are tried: a rotation may be under way); `-` reads "
        "standard input. Never on the command line: it would land in shell history and argv.",
        show_default=False,
    ),
]
TlsDirOption = Annotated[
    Path | None,
    typer.Option(
        "--tls-dir",
        envvar="REDIS_TLS_DIR",
        help="Speak TLS: directory of ca.crt, tls.crt and tls.key (the chart's TLS Secret, mounted). "
        "Verify and drill on a release find its TLS by themselves.",
        show_default=False,
    ),
]
TlsServerNameOption = Annotated[
    str | None,
    typer.Option(
        "--tls-server-name",
        envvar="REDIS_TLS_SERVER_NAME",
        help="The name every node's certificate must carry (the chart's: <fullname>.<namespace>.svc."
        "<cluster domain>); without it only the certificate chain is checked.",
        show_default=False,
    ),
]


def _tls(tls_dir: Path | None, server_name: str | None) -> TlsSettings | None:
    if tls_dir is None:
        if server_name:
            raise UsageError(f"--tls-server-name {server_name} needs --tls-dir (REDIS_TLS_DIR)")
        return None
    return TlsSettings.from_directory(tls_dir, server_name)


@dataclass(frozen=True)
class _Login:
    """How the tools reach the nodes: the ACL login (None: none) and TLS (None: plain TCP)."""

    credentials: Credentials | None
    tls: TlsSettings | None

    def connector(self, timeout: float = 3.0) -> Connector:
        return Connector(self.credentials, timeout=timeout, tls=self.tls)


def _login(
    user: str | None, password_file: Path | None, tls_dir: Path | None, tls_server_name: str | None
) -> _Login:
    return _Login(_credentials(user, password_file), _tls(tls_dir, tls_server_name))


AuthDirOption = Annotated[
    Path | None,
    typer.Option(
        "--auth-dir",
        envvar="REDIS_CLUSTER_AUTH_DIR",
        help="Directory of the mounted Secret: <user>-password files of admin, replication and the "
        "application users.",
        show_default=False,
    ),
]
AppUsersOption = Annotated[
    Path | None,
    typer.Option(
        "--app-users",
        envvar="REDIS_CLUSTER_ACL_USERS",
        help="File of the application users, `<name> <ACL rules>` per line.",
        show_default=False,
    ),
]


def _user_set(auth_dir: Path | None, app_users: Path | None) -> UserSet | None:
    if auth_dir is None:
        if app_users is not None:
            raise UsageError("--app-users needs --auth-dir (REDIS_CLUSTER_AUTH_DIR): the users' passwords")
        return None
    apps = parse_app_users(app_users.read_text()) if app_users is not None else []
    return UserSet.from_directory(auth_dir, apps)


def _credentials(user: str | None, password_file: Path | None) -> Credentials | None:
    if password_file is None:
        if user:
            raise UsageError(f"--user {user} needs --password-file (or REDIS_PASSWORD_FILE)")
        return None
    if str(password_file) == "-":
        import sys

        passwords = password_lines(sys.stdin.read())
        if not passwords:
            raise UsageError("--password-file - read no password from standard input")
        return Credentials(user, passwords)
    return Credentials.from_file(user, password_file)


OutputOption = Annotated[
    output.OutputFormat, typer.Option("--output", "-o", envvar="HELM_REDIS_OUTPUT", help="table or json.")
]


def _in_pod_members(
    statefulset: str | None,
    service: str | None,
    namespace: str | None,
    cluster_domain: str,
    port: int,
    pods: int | None,
    pod_selector: str | None,
) -> list[Member]:
    from .k8s import pod_nodes, statefulset_members

    missing = [
        flag
        for flag, value in (
            ("--statefulset", statefulset),
            ("--service", service),
            ("--namespace", namespace),
            ("--pods", pods),
        )
        if value is None
    ]
    if missing:
        raise UsageError(
            f"without --nodes, init needs {', '.join(missing)} (the chart's hook Job sets them as "
            "REDIS_CLUSTER_* variables)"
        )
    k8s_nodes: dict[str, str] = {}
    if pod_selector:
        k8s_nodes, why = pod_nodes(namespace or "", pod_selector)
        if why:
            output.progress(f"pod placement unknown, pairing replicas without it: {why}")
    return statefulset_members(
        statefulset or "", service or "", namespace or "", cluster_domain, port, pods or 0, k8s_nodes
    )


# The hook Jobs and the reconciler read these from REDIS_CLUSTER_* variables set by the chart.
InitMastersOption = Annotated[
    int | None,
    typer.Option(envvar="REDIS_CLUSTER_MASTERS", min=1, help="Masters wanted [default: nodes / (1 + R)]."),
]
InitReplicasOption = Annotated[
    int, typer.Option("--replicas-per-master", "-r", envvar="REDIS_CLUSTER_REPLICAS_PER_MASTER", min=0)
]
StatefulSetOption = Annotated[str | None, typer.Option(envvar="REDIS_CLUSTER_STATEFULSET")]
ServiceOption = Annotated[str | None, typer.Option(envvar="REDIS_CLUSTER_SERVICE", help="Headless Service.")]
NamespaceOption = Annotated[str | None, typer.Option(envvar="REDIS_CLUSTER_NAMESPACE")]
DomainOption = Annotated[str, typer.Option(envvar="REDIS_CLUSTER_DOMAIN")]
PortOption = Annotated[int, typer.Option(envvar="REDIS_CLUSTER_PORT", min=1, max=65535)]
PodsOption = Annotated[
    int | None, typer.Option(envvar="REDIS_CLUSTER_PODS", min=1, help="Pods of the release's new shape.")
]
PodSelectorOption = Annotated[
    str | None,
    typer.Option(envvar="REDIS_CLUSTER_POD_SELECTOR", help="Label selector of the release's Redis pods."),
]
WaitTimeoutOption = Annotated[
    float, typer.Option(envvar="REDIS_CLUSTER_WAIT_TIMEOUT", min=1, help="Seconds to wait, in all.")
]


@app.command()
@one_line_errors
def init(
    nodes: NodesOption = None,
    masters: InitMastersOption = None,
    replicas_per_master: InitReplicasOption = 1,
    user: UserOption = None,
    password_file: PasswordFileOption = None,
    tls_dir: TlsDirOption = None,
    tls_server_name: TlsServerNameOption = None,
    auth_dir: AuthDirOption = None,
    app_users: AppUsersOption = None,
    statefulset: StatefulSetOption = None,
    service: ServiceOption = None,
    namespace: NamespaceOption = None,
    cluster_domain: DomainOption = "cluster.local",
    port: PortOption = 6379,
    pods: PodsOption = None,
    pod_selector: PodSelectorOption = None,
    timeout: WaitTimeoutOption = 300,
    recover_lost_slots: Annotated[
        bool,
        typer.Option(
            "--recover-lost-slots",
            envvar="REDIS_CLUSTER_RECOVER_LOST_SLOTS",
            help="Give the slots of a shard that lost its master and every replica with their data to an "
            "empty node, accepting that their keys are lost (refused without this).",
        ),
    ] = False,
    node_timeout: Annotated[
        int | None,
        typer.Option(
            "--node-timeout",
            envvar="REDIS_CLUSTER_NODE_TIMEOUT",
            min=1,
            help="The nodes' configured cluster-node-timeout in ms: a fresh formation shortens it while it "
            "forms and puts it back; every run first restores it where a killed run left it short.",
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan, change nothing.")] = False,
    output_format: OutputOption = output.OutputFormat.table,
) -> None:
    """Form the cluster (or finish, grow or heal it); a formed cluster is left untouched. With
    --auth-dir, every running node's ACL users are then set from the password files (a rotation)."""
    users = _user_set(auth_dir, app_users)
    if nodes:
        members = members_from_addresses(parse_node_list(nodes))
    else:
        members = _in_pod_members(statefulset, service, namespace, cluster_domain, port, pods, pod_selector)
    wanted_masters = masters or len(members) // (1 + replicas_per_master)
    connector = _login(user, password_file, tls_dir, tls_server_name).connector()
    try:
        result = Formation(
            connector,
            members,
            wanted_masters,
            replicas_per_master,
            timeout,
            output.progress,
            recover_lost_slots=recover_lost_slots,
            node_timeout=node_timeout,
        ).run(dry_run=dry_run)
        if users is not None and not dry_run:
            _apply_users(connector, [m.address for m in members], users)
    finally:
        connector.close()
    _report_formation(result, output_format, dry_run)


@app.command("ensure-secret")
@one_line_errors
def ensure_secret_command(
    name: Annotated[str, typer.Option("--name", envvar="REDIS_CLUSTER_SECRET", help="The Secret's name.")],
    keys: Annotated[
        str,
        typer.Option(
            "--keys", envvar="REDIS_CLUSTER_SECRET_KEYS", help="Comma list of the password keys it must hold."
        ),
    ],
    namespace: NamespaceOption = None,
    create: Annotated[
        bool,
        typer.Option(
            "--create/--check-only",
            envvar="REDIS_CLUSTER_SECRET_CREATE",
            help="Create the Secret or its missing keys with random passwords (the chart's own Secret), or "
            "only check an existing one.",
        ),
    ] = True,
    pod_selector: PodSelectorOption = None,
    port: PortOption = 6379,
    tls_dir: TlsDirOption = None,
    tls_server_name: TlsServerNameOption = None,
    app_users_rules: Annotated[
        str,
        typer.Option(
            "--app-users-rules",
            envvar="REDIS_CLUSTER_ACL_USERS_RULES",
            help="The application users, `<name> <ACL rules>` per line (as --app-users, given as text).",
        ),
    ] = "",
) -> None:
    """Before anything else of the release: the Secret of the passwords exists and holds every key.
    Never changes a password that exists, never prints one. With --pod-selector, Redis pods that run
    without authentication (it is being switched on) get the users live first, so the rolling restart
    that follows finds every master accepting its replicas' login."""
    from .authsecret import ensure_secret
    from .k8s import core_api

    wanted = [key.strip() for key in keys.split(",") if key.strip()]
    if not wanted:
        raise UsageError("--keys is empty: name the password keys (admin-password,replication-password,...)")
    if namespace is None:
        raise UsageError("--namespace (REDIS_CLUSTER_NAMESPACE) is required")
    api = core_api()
    outcome = ensure_secret(api, namespace, name, wanted, create)
    if outcome.created:
        output.progress(f"created Secret {name} with random passwords for {', '.join(outcome.added)}")
    elif outcome.added:
        output.progress(f"Secret {name}: added random passwords for {', '.join(outcome.added)}")
    else:
        output.progress(f"Secret {name} holds {', '.join(wanted)}: unchanged")
    if pod_selector:
        users = UserSet.from_lookup(
            lambda user: outcome.passwords[password_key(user)], parse_app_users(app_users_rules)
        )
        # TLS settings only once there are pods to reach: on a first install the Secret of a cert-manager
        # Certificate may not exist yet (the Job mounts it optionally), and there is nothing to reach.
        _secure_open_nodes(api, namespace, pod_selector, port, users, lambda: _tls(tls_dir, tls_server_name))


def _secure_open_nodes(
    api, namespace: str, pod_selector: str, port: int, users: UserSet, tls: Callable[[], TlsSettings | None]
) -> None:
    from .k8s import list_pods
    from .nodes import NodeAddress
    from .posture import answers_without_login
    from .users import apply_users

    addresses = [
        NodeAddress(p.ip, port) for p in list_pods(api, namespace, pod_selector) if p.ip and not p.deleting
    ]
    if not addresses:
        return
    anonymous = Connector(None, timeout=2.0, tls=tls())
    try:
        open_nodes = [a for a in addresses if answers_without_login(anonymous, a)]
        if not open_nodes:
            return
        applied = apply_users(anonymous, open_nodes, users)
    finally:
        anonymous.close()
    output.progress(
        f"authentication is being switched on: users {', '.join(applied.users)} set on "
        f"{len(applied.applied)} running nodes that had none (the rolling restart turns `default` off)"
        + "".join(f"; {a} skipped ({why})" for a, why in applied.skipped.items())
    )


def _apply_users(connector: Connector, addresses: list, users: UserSet) -> None:
    from .users import apply_users

    applied = apply_users(connector, addresses, users)
    output.progress(
        f"ACL users {', '.join(applied.users)} set on {len(applied.applied)} nodes"
        + "".join(
            f"; {a} skipped ({why}): it reads them when it starts" for a, why in applied.skipped.items()
        )
    )


@app.command("scale-in")
@one_line_errors
def scale_in(
    nodes: Annotated[
        str | None,
        typer.Option(
            "--nodes",
            envvar="REDIS_CLUSTER_NODES",
            help="Every node that runs now, in pod order (HOST:PORT,...); the first masters x (1 + R) stay.",
            show_default=False,
        ),
    ] = None,
    masters: Annotated[
        int, typer.Option(envvar="REDIS_CLUSTER_MASTERS", min=1, help="Masters after the scale-in.")
    ] = 3,
    replicas_per_master: InitReplicasOption = 1,
    user: UserOption = None,
    password_file: PasswordFileOption = None,
    tls_dir: TlsDirOption = None,
    tls_server_name: TlsServerNameOption = None,
    statefulset: StatefulSetOption = None,
    service: ServiceOption = None,
    namespace: NamespaceOption = None,
    cluster_domain: DomainOption = "cluster.local",
    port: PortOption = 6379,
    pods: PodsOption = None,
    pod_selector: PodSelectorOption = None,
    memory_limit: Annotated[
        str | None,
        typer.Option(
            envvar="REDIS_CLUSTER_MEMORY_LIMIT",
            help="Memory limit of a Redis container (e.g. 512Mi), used when maxmemory is not set.",
            show_default=False,
        ),
    ] = None,
    target_engine_file: Annotated[
        Path | None,
        typer.Option(
            "--target-engine-file",
            envvar="REDIS_CLUSTER_TARGET_ENGINE_FILE",
            help="`<server> --version` of the engine the upgrade moves to: first refuse a move to an engine "
            "that cannot load the running nodes' data.",
            show_default=False,
        ),
    ] = None,
    timeout: WaitTimeoutOption = 300,
    output_format: OutputOption = output.OutputFormat.table,
) -> None:
    """Before the StatefulSet changes (the pre-upgrade hook): refuse an engine move the running nodes'
    data cannot make; then, if pods are removed, move every slot and its keys off them and give each
    remaining master its replicas from the remaining pods."""
    from .scalein import ScaleIn

    if nodes:
        members = members_from_addresses(parse_node_list(nodes))
    else:
        from .k8s import running_pod_count

        running = running_pod_count(namespace or "", pod_selector or "") if namespace and pod_selector else 0
        if running == 0:
            output.progress("no Redis pod runs yet: nothing to scale in")
            _report_scale_in(None, output_format)
            return
        members = _in_pod_members(
            statefulset, service, namespace, cluster_domain, port, running, pod_selector
        )
    connector = _login(user, password_file, tls_dir, tls_server_name).connector()
    try:
        if target_engine_file:
            _refuse_impossible_engine_move(connector, members, target_engine_file)
        result = ScaleIn(
            connector,
            members,
            masters,
            replicas_per_master,
            timeout,
            output.progress,
            memory_limit=_parse_quantity(memory_limit),
        ).run()
    finally:
        connector.close()
    _report_scale_in(result, output_format)


def _refuse_impossible_engine_move(connector: Connector, members: list[Member], version_file: Path) -> None:
    """EngineMoveRefused when the engine in `version_file` cannot load what the running nodes wrote."""
    from .engine import try_read_server_infos
    from .engine_move import move_refusal, parse_version_line
    from .errors import EngineMoveRefused

    try:
        target = parse_version_line(version_file.read_text())
    except ValueError as error:
        raise UsageError(
            f"cannot tell the engine the upgrade moves to from {version_file}: {error}"
        ) from None
    running = try_read_server_infos(connector, [member.address for member in members])
    refusal = move_refusal(running.values(), target)
    if refusal:
        raise EngineMoveRefused(f"upgrade refused before anything changed: {refusal}")
    engines = ", ".join(sorted({str(info) for info in running.values()})) or "no node answered"
    output.progress(f"engine: {engines} -> {target}: {target} loads the running nodes' data")


def _parse_quantity(text: str | None) -> int | None:
    if not text:
        return None
    from kubernetes.utils.quantity import parse_quantity

    try:
        return int(parse_quantity(text))
    except ValueError:
        raise UsageError(f"memory limit {text!r} is not a Kubernetes quantity (for example 512Mi)") from None


def _report_scale_in(result, output_format: output.OutputFormat) -> None:
    data = result.as_dict() if result else {"leaving": [], "actions": []}
    if output_format is output.OutputFormat.json:
        output.emit_json(data)
        return
    if not data["leaving"]:
        output.stdout.print("no pod leaves: nothing changed")
        return
    output.stdout.print(f"leaving: {', '.join(data['leaving'])}")
    for action in data["actions"]:
        output.stdout.print(f"- {action}")


@app.command()
@one_line_errors
def reconcile(
    nodes: NodesOption = None,
    masters: InitMastersOption = None,
    replicas_per_master: InitReplicasOption = 1,
    user: UserOption = None,
    password_file: PasswordFileOption = None,
    tls_dir: TlsDirOption = None,
    tls_server_name: TlsServerNameOption = None,
    statefulset: StatefulSetOption = None,
    service: ServiceOption = None,
    namespace: NamespaceOption = None,
    cluster_domain: DomainOption = "cluster.local",
    port: PortOption = 6379,
    pods: PodsOption = None,
    pod_selector: PodSelectorOption = None,
    interval: Annotated[
        float,
        typer.Option(envvar="REDIS_CLUSTER_RECONCILE_INTERVAL", min=0.1, help="Seconds between two looks."),
    ] = 2.0,
    passes: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many looks (default: run until stopped).")
    ] = None,
    timeout: WaitTimeoutOption = 120,
) -> None:
    """Keep membership whole without helm: a pod that comes back with an empty volume takes its
    predecessor's place, and departed node IDs are forgotten on every node."""
    from .reconcile import Reconciler

    placement = None
    if nodes:
        members = members_from_addresses(parse_node_list(nodes))
    else:

        def placement() -> list[Member]:
            return _in_pod_members(statefulset, service, namespace, cluster_domain, port, pods, pod_selector)

        members = placement()
    wanted_masters = masters or len(members) // (1 + replicas_per_master)
    connector = _login(user, password_file, tls_dir, tls_server_name).connector()
    try:
        Reconciler(
            connector, members, wanted_masters, replicas_per_master, output.progress, timeout, placement
        ).run(interval, passes)
    finally:
        connector.close()


@app.command("failover-controller")
@one_line_errors
def failover_controller(
    namespace: NamespaceOption = None,
    pod_selector: PodSelectorOption = None,
    port: PortOption = 6379,
    user: UserOption = None,
    password_file: PasswordFileOption = None,
    tls_dir: TlsDirOption = None,
    tls_server_name: TlsServerNameOption = None,
    ready_file: Annotated[
        Path | None,
        typer.Option(
            envvar="REDIS_CLUSTER_READY_FILE",
            help="Exists while the pod watch works (the Deployment's readiness probe tests it).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Watch the release's Redis pods and, when a master's Redis process is known gone (its container
    terminated, its pod deleted without a grace period), have its most up-to-date replica take over at once
    (CLUSTER FAILOVER FORCE: the masters still vote). Runs until stopped."""
    import threading

    from .failover_controller import FailoverController
    from .k8s import core_api, watch_pods
    from .nodes import NodeAddress

    if not namespace or not pod_selector:
        raise UsageError(
            "failover-controller needs --namespace and --pod-selector (the chart sets "
            "REDIS_CLUSTER_NAMESPACE and REDIS_CLUSTER_POD_SELECTOR)"
        )
    connector = _login(user, password_file, tls_dir, tls_server_name).connector(timeout=1.0)

    def watching(why: str | None) -> None:
        output.progress(f"watching the pods {pod_selector}" if why is None else f"not watching: {why}")
        if ready_file is not None:
            if why is None:
                ready_file.touch()
            else:
                ready_file.unlink(missing_ok=True)

    def address_of(pod: Any) -> NodeAddress | None:
        ip = pod.status.pod_ip if pod.status else None
        return NodeAddress(ip, port) if ip else None

    controller = FailoverController(connector, address_of, output.progress)
    try:
        watch_pods(core_api(), namespace, pod_selector, controller.on_event, watching, threading.Event())
    finally:
        connector.close()


def _report_formation(result: FormationResult, output_format: output.OutputFormat, dry_run: bool) -> None:
    if output_format is output.OutputFormat.json:
        output.emit_json(result.as_dict())
        return
    if result.already_formed:
        output.stdout.print("already formed: nothing changed")
    if result.plan:
        output.stdout.print(
            output.rows_table(result.plan, "plan" + (" (dry run: nothing changed)" if dry_run else ""))
        )
    for warning in result.warnings:
        output.stdout.print(f"[yellow]warning:[/] {warning}")
    if result.checks:
        output.stdout.print(output.checks_table(result.checks, f"cluster after {result.seconds:.2f} s"))


@app.command("prepare-node")
@one_line_errors
def prepare_node_command(
    nodes_conf: Annotated[
        Path, typer.Option(envvar="REDIS_CLUSTER_NODES_CONF", help="The node's cluster config file.")
    ] = Path("/data/nodes.conf"),
    timeout: Annotated[
        float,
        typer.Option(envvar="REDIS_CLUSTER_PREPARE_TIMEOUT", min=0, help="Seconds to wait for peer names."),
    ] = 60,
    takeover_timeout: Annotated[
        float,
        typer.Option(
            envvar="REDIS_CLUSTER_TAKEOVER_TIMEOUT",
            min=0,
            help="A restarting master waits this long for a live replica to take over (0: never waits).",
        ),
    ] = 15,
    user: UserOption = None,
    password_file: PasswordFileOption = None,
    tls_dir: TlsDirOption = None,
    tls_server_name: TlsServerNameOption = None,
    auth_dir: AuthDirOption = None,
    app_users: AppUsersOption = None,
    auth_include: Annotated[
        Path | None,
        typer.Option(
            "--auth-include",
            envvar="REDIS_CLUSTER_AUTH_INCLUDE",
            help="Write the ACL users (hashed passwords) and the replication login here, for redis.conf to "
            "include (needs --auth-dir).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Before redis-server starts: write its users from the mounted Secret; rewrite peers' stale IPs in
    nodes.conf from their hostnames; a restarting master whose replicas live waits for one of them to
    take over."""
    if auth_include is not None:
        users = _user_set(auth_dir, app_users)
        if users is None:
            raise UsageError("--auth-include needs --auth-dir (REDIS_CLUSTER_AUTH_DIR): the users' passwords")
        write_config_include(auth_include, users)
        output.progress(f"wrote the ACL users ({len(users.acl_rules())}) to {auth_include}")
    connector = _login(user, password_file, tls_dir, tls_server_name).connector(timeout=1.0)
    try:
        prepare_node(nodes_conf, timeout, takeover_timeout, connector, progress=output.progress)
    finally:
        connector.close()


ReleaseArgument = Annotated[
    str | None,
    typer.Argument(
        help="Helm release name (namespace and context come from helm -n / --kube-context).",
        show_default=False,
    ),
]
ReplicasOption = Annotated[
    int | None,
    typer.Option(
        "--replicas-per-master",
        "-r",
        min=0,
        help="Expected replicas per master (with --nodes).",
        show_default=False,
    ),
]
MastersOption = Annotated[
    int | None, typer.Option(min=1, help="Expected masters (with --nodes).", show_default=False)
]


@contextmanager
def _target(
    release: str | None,
    nodes: str | None,
    login: _Login,
    masters: int | None,
    replicas: int | None,
    node_timeout: int | None = None,
) -> Iterator[Target]:
    """A release (through port-forwards) or explicit nodes; exactly one of them."""
    if bool(release) == bool(nodes):
        raise UsageError("give a RELEASE name or --nodes HOST:PORT,... (one of them)")
    if nodes:
        addresses = parse_node_list(nodes)
        connector = login.connector()
        try:
            expected = Expectation(masters, replicas, node_timeout)
            yield Target(members_from_addresses(addresses), connector, expected)
        finally:
            connector.close()
        return
    from .release import open_release

    opened = open_release(release or "", credentials=login.credentials, tls=login.tls)
    try:
        yield Target(opened.members, opened.connector, opened.expected, opened)
    finally:
        opened.close()


@app.command()
@one_line_errors
def verify(
    release: ReleaseArgument = None,
    nodes: NodesOption = None,
    user: UserOption = None,
    password_file: PasswordFileOption = None,
    tls_dir: TlsDirOption = None,
    tls_server_name: TlsServerNameOption = None,
    masters: MastersOption = None,
    replicas_per_master: ReplicasOption = None,
    node_timeout: Annotated[
        int | None,
        typer.Option(
            "--node-timeout",
            min=1,
            help="Expected cluster-node-timeout in ms (with --nodes; a release's comes from its values).",
            show_default=False,
        ),
    ] = None,
    read_only: Annotated[bool, typer.Option("--read-only", help="Skip the write/read round trip.")] = False,
    output_format: OutputOption = output.OutputFormat.table,
) -> None:
    """Is the release's cluster healthy and complete? Exit 0 all pass, 1 a check failed."""
    from .verify import verify as run_verify

    login = _login(user, password_file, tls_dir, tls_server_name)
    with _target(release, nodes, login, masters, replicas_per_master, node_timeout) as target:
        report = run_verify(
            target.connector,
            [m.address for m in target.members],
            target.expected,
            names={str(m.address): m.name for m in target.members},
            k8s_nodes=target.release.k8s_nodes if target.release else None,
            read_only=read_only,
            extra_checks=[
                *target.release.pod_checks(),
                target.release.failover_controller_check(),
                target.release.network_policy_check(),
            ]
            if target.release
            else None,
        )
    if output_format is output.OutputFormat.json:
        output.emit_json(report.as_dict())
    else:
        if report.nodes:
            output.stdout.print(output.rows_table(report.nodes, "nodes"))
        verdict = "healthy and complete" if report.ok else "NOT healthy"
        output.stdout.print(output.checks_table(report.checks, f"{verdict} ({report.seconds:.2f} s)"))
    if not report.ok:
        raise typer.Exit(1)


def _mode_help() -> str:
    from .drill import MODES

    return " ".join(f"{name}: {text}" for name, text in MODES.items())


@app.command()
@one_line_errors
def drill(
    release: ReleaseArgument = None,
    nodes: NodesOption = None,
    user: UserOption = None,
    password_file: PasswordFileOption = None,
    tls_dir: TlsDirOption = None,
    tls_server_name: TlsServerNameOption = None,
    mode: Annotated[
        str,
        typer.Option(help="graceful, restart, hang, crash or rollout. " + _mode_help()),
    ] = "crash",
    pod: Annotated[
        str | None,
        typer.Option(
            help="The master to take down (default: the master with the lowest ordinal).", show_default=False
        ),
    ] = None,
    masters: MastersOption = None,
    replicas_per_master: ReplicasOption = None,
    force: Annotated[bool, typer.Option("--force", help="Drill even if verify fails.")] = False,
    failback: Annotated[
        bool, typer.Option("--failback", help="Give the slots back to the original master.")
    ] = False,
    max_failover_seconds: Annotated[
        float | None, typer.Option(min=0, help="Slower promotion fails the drill.", show_default=False)
    ] = None,
    max_unwritable_seconds: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="A shard that takes no writes for longer (its longest client-seen gap) fails the drill.",
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            min=5,
            help="Seconds the drill may take after the fault (default: 180; rollout: 900).",
            show_default=False,
        ),
    ] = None,
    max_writes: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Upper bound of the write load (default: 200000; rollout: 2000000).",
            show_default=False,
        ),
    ] = None,
    output_format: OutputOption = output.OutputFormat.table,
) -> None:
    """Failover drill under write load. A fault mode takes a master down (--mode graceful, restart, hang,
    crash): its replica must take over as that mode expects, proven by the replicas' manual-failover
    counters, and the old master must come back with the same node ID. --mode rollout restarts every pod
    of the release in turn. Exit 1 when anything of that fails or an acknowledged write is lost."""
    from .drill import MODES, Drill, RolloutDrill
    from .faults import CommandFaults
    from .verify import verify as run_verify

    if mode not in MODES:
        raise UsageError(f"--mode {mode!r}: use {', '.join(MODES)}")
    if mode == "rollout":
        if nodes:
            raise UsageError(
                "--mode rollout restarts a release's StatefulSet: give a RELEASE name, not --nodes"
            )
        given = [
            flag
            for flag, value in (
                ("--pod", pod),
                ("--failback", failback),
                ("--max-failover-seconds", max_failover_seconds),
            )
            if value
        ]
        if given:
            raise UsageError(f"{', '.join(given)} do(es) not apply to --mode rollout")
    with _target(
        release, nodes, _login(user, password_file, tls_dir, tls_server_name), masters, replicas_per_master
    ) as target:
        names = {str(m.address): m.name for m in target.members}
        before = run_verify(target.connector, [m.address for m in target.members], target.expected, names)
        if not before.ok and not force:
            failing = ", ".join(c.name for c in before.checks if not c.ok)
            raise UsageError(f"refusing to drill a cluster that fails verify ({failing}); --force overrides")
        per_master = target.expected.replicas_per_master
        controller = target.release.failover_controller_check().detail if target.release else ""
        if mode == "rollout":
            from .rollout import release_rollout

            report = RolloutDrill(
                target.connector,
                target.members,
                target.expected,
                release_rollout(target.release),
                timeout=timeout or 900,
                max_writes=max_writes or 2_000_000,
                max_unwritable_seconds=max_unwritable_seconds,
                progress=output.progress,
            ).run()
        else:
            faults = target.release.faults() if target.release else CommandFaults(target.connector)
            report = Drill(
                target.connector,
                target.members,
                faults,
                per_master if per_master is not None else 1,
                mode=mode,  # type: ignore[arg-type]
                target=pod,
                timeout=timeout or 180,
                max_writes=max_writes or 200_000,
                failback=failback,
                max_failover_seconds=max_failover_seconds,
                max_unwritable_seconds=max_unwritable_seconds,
                progress=output.progress,
            ).run()
    report.failover_controller = controller
    if output_format is output.OutputFormat.json:
        output.emit_json(report.as_dict())
    else:
        _print_drill(report)
    if not report.ok:
        raise typer.Exit(1)


def _print_drill(report) -> None:
    rows = [{"event": e, "after": f"{t:.2f} s"} for e, t in report.ordered_timeline()]
    title = f"{report.mode} drill of {report.target}"
    output.stdout.print(output.rows_table(rows, title))
    if report.mode == "rollout":
        handovers = [
            {"after": f"{h.seconds:.2f} s", "shard (master at start)": h.shard, "from": h.old, "to": h.new}
            for h in report.handovers
        ]
        if handovers:
            output.stdout.print(output.rows_table(handovers, "handovers"))
        else:
            output.stdout.print("handovers: none observed")
    shards = [
        {
            "shard (master at start)": s.name,
            "slots": s.slots,
            "longest write gap": f"{s.longest_gap * 1000:.0f} ms",
            "acknowledged writes": str(s.acknowledged),
            "lost": str(s.lost),
        }
        for s in report.shards.values()
    ]
    output.stdout.print(
        output.rows_table(sorted(shards, key=lambda r: r["shard (master at start)"]), "writes")
    )
    if report.mode == "rollout":
        facts = {"outcome": report.outcome, "StatefulSet": report.rollout or "status unknown"}
    else:
        promotion = "n/a" if report.promotion_seconds is None else f"{report.promotion_seconds:.2f} s"
        proof = "unknown" if report.manual_failovers is None else str(report.manual_failovers)
        timeout = report.node_timeout_seconds
        facts = {
            "outcome": report.outcome or "none",
            "promotion": promotion,
            "new master": report.new_master or "none",
            "manual failovers (proof)": f"{proof} (MFSTART sent by the replicas of {report.target})",
            "node timeout": "unknown" if timeout is None else f"{timeout:g} s",
        }
        if report.failover_controller:
            facts["failover controller"] = report.failover_controller
    output.stdout.print(output.rows_table([{"": k, "value": v} for k, v in facts.items()], "result"))
    output.stdout.print(
        f"acknowledged writes: {report.acknowledged}, lost: {report.lost_acknowledged}; not acknowledged by "
        f"every replica: {report.unreplicated} (lost {report.lost_unreplicated}); failed: {report.failed}"
        + (f"; not verifiable (no master reachable): {report.unverified}" if report.unverified else "")
        + (f"; {report.failback}" if report.failback else "")
    )
    for problem in report.problems:
        output.stdout.print(f"[red]problem:[/] {problem}", markup=True)
    output.stdout.print("[green]drill passed[/]" if report.ok else "[red]drill FAILED[/]")


def main() -> None:
    """The console script. Click's own handling (standalone mode) is off so that a usage error is one
    line, not Typer's boxed usage: `--help` still exits 0, typer.Exit keeps its code, usage errors
    exit 2 and Ctrl-C 130."""
    from typer.main import get_command

    try:
        from typer._click import exceptions as click_errors  # Typer >= 0.22 carries its own Click
    except ImportError:  # pragma: no cover - older Typer on the click package
        from click import exceptions as click_errors  # type: ignore[no-redef]
    no_args_help = getattr(click_errors, "NoArgsIsHelpError", ())
    try:
        code = get_command(app).main(standalone_mode=False)
    except KeyboardInterrupt:  # outside a drill's own handling (which still reports): one line
        code = 130
    except no_args_help as error:  # `helm-redis` alone: the help (Typer printed it already), exit 2
        if error.format_message().strip():
            error.show()
        code = error.exit_code
    except click_errors.UsageError as error:
        path = error.ctx.command_path if error.ctx is not None else "helm-redis"
        message = _one_line(error.format_message()).rstrip(".")
        output.stderr.print(f"error: {message} (see {path} --help)", markup=False)
        code = error.exit_code
    except click_errors.ClickException as error:
        output.stderr.print(f"error: {_one_line(error.format_message())}", markup=False)
        code = error.exit_code
    except (getattr(click_errors, "Abort", KeyboardInterrupt), EOFError):
        code = 130
    except BrokenPipeError:  # `helm redis verify --help | head`: the reader left; nothing to say
        code = 0
    if code == 130:  # Typer turns Ctrl-C into Exit(130); no command exits 130 itself
        output.stderr.print("interrupted", markup=False)
    raise SystemExit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
