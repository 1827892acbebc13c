"""Real redis-server processes on loopback, for tests, benchmarks and trying the tools without Kubernetes.

The server binary is a parameter (default: `redis-server` on PATH), so the same nodes run on any engine of
issue 13 (Redis 7.0/8.0, Valkey 8.1/9.1: tests/engines.py finds them in the tool cache). Every config key
written here exists in all four (ci/engines/README.md's table; checked by starting each engine with it).

Each set of nodes gets its own 127.0.B.x block, so distinct addresses stand in for pod IPs; with
`ipv6=True` a set shares ::1 instead, one free port per node (pods on an IPv6-only cluster). Nodes are
configured as the chart configures pods (cluster mode, AOF, announce ip and hostname, diskless sync
starting as soon as the expected replicas are there).
"""

from __future__ import annotations

import itertools
import os
import random
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from .credentials import UserSet, write_config_include
from .nodes import Connector, NodeAddress
from .tlsconfig import TlsSettings

# 127.0.B.x blocks, starting at a per-process offset and skipping blocks in use, so test runs side by side
# (a developer's and CI's, or several suites) never share an address.
_blocks = (1 + (os.getpid() + i) % 254 for i in itertools.count())


def share_blocks(index: int, count: int) -> None:
    """Cooperating processes started together (parallel test workers, whose process ids are adjacent) each
    take their own share of the blocks, `index` of `count`, so two of them never race for one block."""
    global _blocks
    share = [block for block in range(1, 255) if block % count == index]
    _blocks = itertools.cycle(share)


REDIS_SERVER = shutil.which("redis-server") or "redis-server"  # the default server binary
IPV6_LOOPBACK = "::1"
BUS_PORT_OFFSET = 10000


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(host: str, count: int, attempts: int = 500) -> list[int]:
    """`count` distinct ports on `host` whose cluster bus port (+10000) is free too."""
    ports: list[int] = []
    for _ in range(attempts):
        port = random.randrange(20000, 30000)
        if port not in ports and _bindable(host, port) and _bindable(host, port + BUS_PORT_OFFSET):
            ports.append(port)
            if len(ports) == count:
                return ports
    raise RuntimeError(f"found only {len(ports)} free port pair(s) on {host} in {attempts} attempts")


def _free_block(port: int) -> int:
    """The next 127.0.B.x block whose first node address is free on `port`."""
    for _ in range(254):
        block = next(_blocks)  # bounded: at most every block once (a share repeats within the 254)
        if _bindable(f"127.0.{block}.10", port):
            return block
    raise RuntimeError(f"no free 127.0.B.10:{port} address for local nodes")


@dataclass
class LocalNode:
    ip: str
    port: int
    directory: Path
    hostname: str
    node_timeout: int = 5000
    users: UserSet | None = None  # ACL users (default off), as the chart's pods start with
    replicas_per_master: int = 1
    tls: TlsSettings | None = None  # TLS only, bus and replication included, as the chart's tls.enabled
    server: str | Path = REDIS_SERVER  # the engine's server binary (redis-server, valkey-server, a wrapper)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def address(self) -> NodeAddress:
        return NodeAddress(self.ip, self.port)

    @property
    def nodes_conf(self) -> Path:
        return self.directory / "nodes.conf"

    def config(self) -> str:
        lines = [
            *self._port_lines(),
            f"bind {self.ip}",
            f"bind-source-addr {self.ip}",
            "protected-mode no",
            "cluster-enabled yes",
            "cluster-config-file nodes.conf",
            f"cluster-node-timeout {self.node_timeout}",
            f"cluster-announce-ip {self.ip}",
            f"cluster-announce-hostname {self.hostname}",
            "appendonly yes",
            'save ""',
            "enable-debug-command local",
            f"repl-diskless-sync-max-replicas {self.replicas_per_master}",
            f"dir {self.directory}",
            f"logfile {self.directory / 'redis.log'}",
        ]
        if self.users is not None:
            include = self.directory / "auth.conf"
            write_config_include(include, self.users)
            lines.append(f"include {include}")
        return "\n".join(lines) + "\n"

    def _port_lines(self) -> list[str]:
        if self.tls is None:
            return [f"port {self.port}"]
        return [
            "port 0",
            f"tls-port {self.port}",
            "tls-cluster yes",
            "tls-replication yes",
            f"tls-cert-file {self.tls.cert_file}",
            f"tls-key-file {self.tls.key_file}",
            f"tls-ca-cert-file {self.tls.ca_file}",
            "tls-auth-clients yes",
        ]

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "redis.conf").write_text(self.config())
        self.process = subprocess.Popen(
            [str(self.server), str(self.directory / "redis.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def client(self) -> redis.Redis:
        """A client logged in as admin (when there are users), over TLS when the node speaks it."""
        login = self.users.admin_credentials if self.users else None
        return Connector(login, timeout=5, tls=self.tls).client(self.address)

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        client = self.client()
        while True:
            try:
                client.ping()
                return
            except redis.exceptions.BusyLoadingError:
                pass
            except redis.ConnectionError:
                if self.process and self.process.poll() is not None:
                    log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"{self.server} {self.address} exited: {log}") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.server} {self.address} did not answer within {timeout} s")
            time.sleep(0.02)

    def stop(self, kill: bool = False) -> None:
        """Kill (SIGKILL: a crash) or terminate (SIGTERM: a clean shutdown) the process and wait for it."""
        if self.process is None:
            return
        if self.process.poll() is None:
            (self.process.kill if kill else self.process.terminate)()
            self.process.wait(timeout=30)
        self.process = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class LocalNodes:
    """A set of fresh cluster-mode server processes in `root`, each running `server`."""

    def __init__(
        self,
        root: Path,
        count: int,
        port: int = 6379,
        node_timeout: int = 5000,
        users: UserSet | None = None,
        replicas_per_master: int = 1,
        ipv6: bool = False,
        tls: TlsSettings | None = None,
        server: str | Path = REDIS_SERVER,
    ) -> None:
        self.root = root
        self.server = server
        self.block = _free_block(port)
        self.ipv6 = ipv6
        ports = free_ports(IPV6_LOOPBACK, count) if ipv6 else [port] * count
        self.nodes = [
            LocalNode(
                ip=IPV6_LOOPBACK if ipv6 else f"127.0.{self.block}.{10 + index}",
                port=ports[index],
                directory=root / f"node-{index}",
                hostname=f"node-{index}.{'v6-' if ipv6 else ''}block-{self.block}.test",
                node_timeout=node_timeout,
                users=users,
                replicas_per_master=replicas_per_master,
                tls=tls,
                server=server,
            )
            for index in range(count)
        ]

    def __enter__(self) -> LocalNodes:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop(kill=True)

    @property
    def addresses(self) -> list[NodeAddress]:
        return [node.address for node in self.nodes]

    def nodes_option(self) -> str:
        return ",".join(str(a) for a in self.addresses)

    def start(self) -> None:
        for node in self.nodes:
            if not node.running:
                node.start()
        for node in self.nodes:
            node.wait_ready()

    def stop(self, kill: bool = False) -> None:
        for node in self.nodes:
            node.stop(kill=kill)

    def by_address(self, address: NodeAddress | str) -> LocalNode:
        return next(n for n in self.nodes if str(n.address) == str(address))

    def move_to_new_block(self) -> dict[str, str]:
        """Give every (stopped) node a new loopback address, as pods get new IPs; returns hostname -> ip."""
        if self.ipv6:
            raise ValueError("IPv6 nodes share ::1: they have no other address to move to")
        self.block = _free_block(self.nodes[0].port)
        for index, node in enumerate(self.nodes):
            node.ip = f"127.0.{self.block}.{10 + index}"
        return {node.hostname: node.ip for node in self.nodes}
