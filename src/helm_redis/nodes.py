"""Reaching Redis nodes: addresses, connections (through an optional address map) and reading views."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.credentials import CredentialProvider
from redis.retry import Retry

from .clusterview import NodeView, parse_cluster_nodes, parse_info
from .credentials import Credentials
from .errors import AUTH_FIX, NodeRefused, NodesNotReady, NodeUnreachable, UsageError
from .tlsconfig import TlsSettings

T = TypeVar("T")


@dataclass(frozen=True, order=True)
class NodeAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> NodeAddress:
        host, sep, port = text.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise UsageError(f"node address {text!r} is not HOST:PORT (for example 10.0.0.5:6379)")
        return cls(host.strip("[]"), int(port))


def parse_node_list(text: str) -> list[NodeAddress]:
    """'a:1,b:2' -> addresses, refusing duplicates and empty lists with a message naming the value."""
    items = [item for item in text.replace(" ", ",").split(",") if item]
    if not items:
        raise UsageError("--nodes is empty: give HOST:PORT,HOST:PORT,...")
    addresses = [NodeAddress.parse(item) for item in items]
    if len(set(addresses)) != len(addresses):
        raise UsageError(f"--nodes lists an address twice: {text}")
    return addresses


# Maps an address as Redis announces it (pod IP) to one this process can reach (a port-forward).
AddressMap = Callable[[NodeAddress], NodeAddress]


def identity(address: NodeAddress) -> NodeAddress:
    return address


class Connector:
    """Opens (and caches) one client per node; every announced address goes through `address_map`.
    With several passwords (a rotation under way) each node gets the first one it accepts. With `tls`
    every connection is TLS, the node's certificate checked (tlsconfig)."""

    def __init__(
        self,
        credentials: Credentials | None = None,
        address_map: AddressMap = identity,
        timeout: float = 3.0,
        tls: TlsSettings | None = None,
    ) -> None:
        self.credentials = credentials
        self.address_map = address_map
        self.timeout = timeout
        self.tls = tls
        self._clients: dict[NodeAddress, redis.Redis] = {}
        self._accepted: dict[NodeAddress, str] = {}

    def client(self, address: NodeAddress) -> redis.Redis:
        """The shared (pooled) client of a node."""
        reachable = self.address_map(address)
        if reachable not in self._clients:
            self._clients[reachable] = self._new_client(reachable)
        return self._clients[reachable]

    def dedicated(self, address: NodeAddress) -> redis.Redis:
        """A client on one connection of its own (WAIT refers to that connection's own writes)."""
        return self._new_client(self.address_map(address), single_connection_client=True)

    def with_timeout(self, timeout: float) -> Connector:
        """A connector of its own (its own connections) to the same nodes, with another timeout."""
        return Connector(self.credentials, self.address_map, timeout, self.tls)

    def anonymous(self) -> Connector:
        """A connector to the same nodes, the same way (TLS included), that never logs in."""
        return Connector(None, self.address_map, self.timeout, self.tls)

    def login(self, address: NodeAddress) -> tuple[str | None, str | None]:
        """(user, password) this node accepts, for commands that log in themselves (MIGRATE)."""
        return self._login(self.address_map(address))

    def _login(self, reachable: NodeAddress) -> tuple[str | None, str | None]:
        if self.credentials is None:
            return None, None
        passwords = self.credentials.current()
        if len(passwords) == 1:
            return self.credentials.username, passwords[0]
        accepted = self._accepted.get(reachable)
        if accepted not in passwords:
            accepted = self._accepted[reachable] = self._first_accepted(reachable, passwords)
        return self.credentials.username, accepted

    def _first_accepted(self, reachable: NodeAddress, passwords: tuple[str, ...]) -> str:
        for password in passwords:
            probe = self._open(reachable, password=password)
            try:
                probe.ping()
                return password
            except redis.AuthenticationError:
                continue
            except redis.RedisError:
                break  # down or busy: the caller's own request will tell
            finally:
                probe.close()
        return passwords[0]

    def _new_client(self, reachable: NodeAddress, **options: Any) -> redis.Redis:
        if self.credentials is None:
            return self._open(reachable, **options)
        # Asked on every (re)connection: a client made before a rotation logs in with today's password.
        return self._open(reachable, credential_provider=_NodeLogin(self, reachable), **options)

    def _open(self, reachable: NodeAddress, **options: Any) -> redis.Redis:
        if "password" in options:
            options["username"] = self.credentials.username if self.credentials else None
        single = options.pop("single_connection_client", False)
        pool = redis.ConnectionPool(
            host=reachable.host,
            port=reachable.port,
            socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
            decode_responses=True,
            # Our callers poll with their own deadlines; hidden retries would only blur them.
            retry=Retry(NoBackoff(), 0),
            **(self.tls.pool_options() if self.tls else {}),
            **options,
        )
        # The client owns its pool: closing the client disconnects it.
        client = redis.Redis(connection_pool=pool, single_connection_client=single)
        client.auto_close_connection_pool = True
        return client

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()


class _NodeLogin(CredentialProvider):
    """The login of one node, worked out when a connection is made (redis-py asks on each one)."""

    def __init__(self, connector: Connector, reachable: NodeAddress) -> None:
        self.connector, self.reachable = connector, reachable

    def get_credentials(self) -> tuple[str] | tuple[str, str]:
        user, password = self.connector._login(self.reachable)
        return (user, password or "") if user else (password or "",)


def describe_failure(address: NodeAddress, error: Exception) -> str:
    if isinstance(error, redis.AuthenticationError | redis.exceptions.AuthenticationWrongNumberOfArgsError):
        return f"{address}: wrong user or password ({AUTH_FIX})"
    if isinstance(error, redis.ResponseError) and "NOAUTH" in str(error):
        return f"{address}: the node requires a login ({AUTH_FIX})"
    return f"{address}: {error}"


def unreachable(address: NodeAddress, error: redis.RedisError) -> NodeUnreachable:
    """A node that is down, restarting or loading may answer soon (NodeUnreachable); one that answered
    with an error will not (NodeRefused)."""
    transient = isinstance(error, redis.ConnectionError | redis.TimeoutError) and not isinstance(
        error, redis.AuthenticationError
    )
    if transient or "LOADING" in str(error):
        return NodeUnreachable(describe_failure(address, error))
    return NodeRefused(describe_failure(address, error))


def ping(connector: Connector, address: NodeAddress) -> None:
    try:
        connector.client(address).ping()
    except redis.RedisError as error:
        raise unreachable(address, error) from None


def read_view(connector: Connector, address: NodeAddress) -> NodeView:
    """One round trip to a node: its cluster view, replication state and key count."""
    try:
        pipe = connector.client(address).pipeline(transaction=False)
        pipe.execute_command("CLUSTER", "NODES")
        pipe.execute_command("CLUSTER", "INFO")
        pipe.info("replication")
        pipe.dbsize()
        pipe.config_get("appendonly")
        nodes_text, info_text, replication, keys, appendonly = pipe.execute()
    except redis.RedisError as error:
        raise unreachable(address, error) from None
    return NodeView(
        address=str(address),
        nodes=tuple(parse_cluster_nodes(nodes_text)),
        cluster_info=parse_info(info_text),
        replication=dict(replication),
        keys=int(keys),
        appendonly=appendonly.get("appendonly") == "yes",
    )


def parallel(function: Callable[[T], Any], items: Iterable[T], workers: int = 32) -> list[Any]:
    """Run `function` on every item at once (I/O bound), results in order; the first error is raised."""
    items = list(items)
    if len(items) <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(function, items))


def read_views(connector: Connector, addresses: Iterable[NodeAddress]) -> list[NodeView]:
    return parallel(lambda address: read_view(connector, address), addresses)


def try_each(read: Callable[[NodeAddress], T], addresses: Iterable[NodeAddress]) -> list[T | NodeUnreachable]:
    """`read` on every node at once, results in order; a node that does not answer (restarting, loading
    its data) yields its error instead of failing the whole read. A wrong password is no transient state:
    it is raised."""

    def attempt(address: NodeAddress) -> T | NodeUnreachable:
        try:
            return read(address)
        except NodeRefused:
            raise
        except NodeUnreachable as error:
            return error

    return parallel(attempt, addresses)


def try_read_views(
    connector: Connector, addresses: Iterable[NodeAddress]
) -> list[NodeView | NodeUnreachable]:
    """Like read_views, but a node that does not answer yields its error (try_each)."""
    return try_each(lambda address: read_view(connector, address), addresses)


def wait_until_reachable(
    connector: Connector,
    addresses: list[NodeAddress],
    timeout: float,
    progress: Callable[[str], None] = lambda _msg: None,
    names: dict[NodeAddress, str] | None = None,
) -> None:
    """Wait (bounded) until every node answers PING; report which ones it still waits for."""
    names = names or {}
    deadline = time.monotonic() + timeout
    pending = list(addresses)
    last_report = ""
    while True:
        still: list[NodeAddress] = []
        for address in pending:
            try:
                ping(connector, address)
            except NodeRefused:
                raise
            except NodeUnreachable:
                still.append(address)
        pending = still
        if not pending:
            return
        label = ", ".join(names.get(a, str(a)) for a in pending)
        if label != last_report:
            progress(f"waiting for {len(pending)} node(s) to answer PING: {label}")
            last_report = label
        if time.monotonic() >= deadline:
            raise NodesNotReady(f"{len(pending)} node(s) did not answer PING within {timeout:.0f} s: {label}")
        time.sleep(0.2)


def resolve_host(host: str) -> str:
    """A hostname -> its first IPv4/IPv6 address (CLUSTER MEET takes IPs only)."""
    try:
        return socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)[0][4][0]
    except socket.gaierror as error:
        raise NodeUnreachable(f"{host}: cannot resolve ({error.strerror})") from None
