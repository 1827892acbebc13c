"""Formation benchmark: `helm-redis init --nodes` versus `redis-cli --cluster create`, same run, same nodes.

For each size, every run starts a fresh set of loopback redis-server processes (configured as the
chart's pods) for each tool, waits until they answer PING and have run RUNNING_SECONDS (as on Kubernetes,
where the hook runs after every pod is Ready: Redis skips its cluster state update during a node's first
2 s, which hides the rejoin delay a fresh formation meets, see helm_redis.node_timeout), and times the tool
as a subprocess:
- redis-cli returns: when `redis-cli --cluster create --cluster-replicas R --cluster-yes` exits;
- redis-cli done: until the cluster it made meets our done criteria (every node cluster_state:ok,
  agreement, coverage, no open slots, every role agreed, every replica link up), polled from outside;
- helm-redis init: until the command exits (it exits only once those criteria hold).
Prints medians and ratios. Usage: benchmarks/formation.py [--sizes 6,60] [--runs 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from helm_redis.health import DONE_CHECKS, Expectation, assess, failed
from helm_redis.localnodes import LocalNodes
from helm_redis.nodes import Connector, read_views

HELM_REDIS = str(Path(sys.executable).with_name("helm-redis"))


RUNNING_SECONDS = 3.0
NODE_TIMEOUT_MS = 5000  # the chart's default cluster.nodeTimeout


def _fresh(root: Path, count: int) -> LocalNodes:
    """COUNT new nodes that have run at least RUNNING_SECONDS."""
    started = time.monotonic()
    nodes = LocalNodes(root, count, node_timeout=NODE_TIMEOUT_MS, replicas_per_master=1)
    nodes.start()
    time.sleep(max(0.0, started + RUNNING_SECONDS - time.monotonic()))
    return nodes


def _done(nodes: LocalNodes, masters: int) -> bool:
    views = read_views(Connector(), nodes.addresses)
    return not failed(assess(views, Expectation(masters, 1)), DONE_CHECKS)


def redis_cli_run(root: Path, count: int) -> tuple[float, float]:
    nodes = _fresh(root, count)
    try:
        started = time.monotonic()
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *map(str, nodes.addresses),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=600,
        )
        returned = time.monotonic() - started
        deadline = started + 600
        while not _done(nodes, count // 2) and time.monotonic() < deadline:
            time.sleep(0.05)
        return returned, time.monotonic() - started
    finally:
        nodes.stop(kill=True)


def helm_redis_run(root: Path, count: int) -> float:
    nodes = _fresh(root, count)
    try:
        started = time.monotonic()
        subprocess.run(
            [
                HELM_REDIS,
                "init",
                "--nodes",
                nodes.nodes_option(),
                "--replicas-per-master",
                "1",
                "--node-timeout",
                str(NODE_TIMEOUT_MS),
                "-o",
                "json",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=600,
        )
        elapsed = time.monotonic() - started
        assert _done(nodes, count // 2), "helm-redis init returned before the cluster was complete"
        return elapsed
    finally:
        nodes.stop(kill=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="6,60")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    redis_version = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True
    ).stdout.split()[2]
    print(
        f"machine: {platform.machine()}, {_cpus()} cores, "
        f"Python {platform.python_version()}, redis {redis_version}"
    )
    header = (
        f"{'nodes':>5} | {'redis-cli returns':>17} | {'redis-cli done':>14} | {'helm-redis init':>15} | "
        f"{'ratio vs returns':>16} | {'ratio vs done':>13}"
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for count in (int(s) for s in args.sizes.split(",")):
            cli_returns, cli_done, ours = [], [], []
            for run in range(args.runs):
                r, d = redis_cli_run(Path(tmp) / f"cli-{count}-{run}", count)
                cli_returns.append(r)
                cli_done.append(d)
                ours.append(helm_redis_run(Path(tmp) / f"ours-{count}-{run}", count))
                print(
                    f"  {count} nodes, run {run + 1}: redis-cli {r:.2f} s (done {d:.2f} s), "
                    f"helm-redis {ours[-1]:.2f} s",
                    flush=True,
                )
            a, b, c = (statistics.median(x) for x in (cli_returns, cli_done, ours))
            rows.append(
                f"{count:>5} | {a:>15.2f} s | {b:>12.2f} s | {c:>13.2f} s | {c / a:>16.2f} | {c / b:>13.2f}"
            )
    print(
        f"\nmedian of {args.runs} runs (each tool on its own fresh nodes, started {RUNNING_SECONDS:.0f} s "
        "before; ratio = helm-redis / redis-cli)"
    )
    print(header)
    print("-" * len(header))
    print("\n".join(rows))


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    main()
