"""`helm-redis`: the command line of the hook image and of the Helm plugin (`helm redis ...`).

A thin adapter: parse, check combinations, call the domain, map its outcome to an exit code
(0 all good, 1 a check or the drill failed, 2 usage or connection error, one line, no traceback).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, ParamSpec

import typer

from . import output
from .errors import HelmRedisError, UsageError
from .formation import Formation, FormationResult, members_from_addresses
from .nodes import Connector, parse_node_list
from .nodesconf import prepare_nodes_conf
from .plan import Member

P = ParamSpec("P")


def one_line_errors(command: Callable[P, None]) -> Callable[P, None]:
    """Domain errors become one line on stderr and their exit code; never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            command(*args, **kwargs)
        except HelmRedisError as error:
            output.stderr.print(f"error: {error}", markup=False)
            raise typer.Exit(error.exit_code) from None

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
PasswordOption = Annotated[
    str | None,
    typer.Option(envvar="REDIS_PASSWORD", help="Redis password (requirepass).", show_default=False),
]
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


@app.command()
@one_line_errors
def init(
    nodes: NodesOption = None,
    masters: Annotated[
        int | None,
        typer.Option(
            envvar="REDIS_CLUSTER_MASTERS", min=1, help="Masters wanted [default: nodes / (1 + R)]."
        ),
    ] = None,
    replicas_per_master: Annotated[
        int, typer.Option("--replicas-per-master", "-r", envvar="REDIS_CLUSTER_REPLICAS_PER_MASTER", min=0)
    ] = 1,
    password: PasswordOption = None,
    statefulset: Annotated[str | None, typer.Option(envvar="REDIS_CLUSTER_STATEFULSET")] = None,
    service: Annotated[
        str | None, typer.Option(envvar="REDIS_CLUSTER_SERVICE", help="Headless Service.")
    ] = None,
    namespace: Annotated[str | None, typer.Option(envvar="REDIS_CLUSTER_NAMESPACE")] = None,
    cluster_domain: Annotated[str, typer.Option(envvar="REDIS_CLUSTER_DOMAIN")] = "cluster.local",
    port: Annotated[int, typer.Option(envvar="REDIS_CLUSTER_PORT", min=1, max=65535)] = 6379,
    pods: Annotated[int | None, typer.Option(envvar="REDIS_CLUSTER_PODS", min=1)] = None,
    pod_selector: Annotated[
        str | None,
        typer.Option(
            envvar="REDIS_CLUSTER_POD_SELECTOR", help="Label selector to learn each pod's k8s node."
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option(envvar="REDIS_CLUSTER_WAIT_TIMEOUT", min=1, help="Seconds to wait, in all.")
    ] = 300,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan, change nothing.")] = False,
    output_format: OutputOption = output.OutputFormat.table,
) -> None:
    """Form the cluster (or finish or grow it); a formed cluster is left untouched."""
    if nodes:
        members = members_from_addresses(parse_node_list(nodes))
    else:
        members = _in_pod_members(statefulset, service, namespace, cluster_domain, port, pods, pod_selector)
    wanted_masters = masters or len(members) // (1 + replicas_per_master)
    connector = Connector(password)
    try:
        result = Formation(
            connector, members, wanted_masters, replicas_per_master, timeout, output.progress
        ).run(dry_run=dry_run)
    finally:
        connector.close()
    _report_formation(result, output_format, dry_run)


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
def prepare_node(
    nodes_conf: Annotated[
        Path, typer.Option(envvar="REDIS_CLUSTER_NODES_CONF", help="The node's cluster config file.")
    ] = Path("/data/nodes.conf"),
    timeout: Annotated[
        float,
        typer.Option(envvar="REDIS_CLUSTER_PREPARE_TIMEOUT", min=0, help="Seconds to wait for peer names."),
    ] = 60,
) -> None:
    """Before redis-server starts: rewrite peers' stale IPs in nodes.conf from their hostnames."""
    prepare_nodes_conf(nodes_conf, timeout, progress=output.progress)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
