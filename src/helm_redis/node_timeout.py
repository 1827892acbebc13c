"""A fresh formation's short `cluster-node-timeout`, and putting the configured one back. Redis level.

Why a formation on running nodes waits: Redis's `clusterUpdateState` (redis-7.0.15 src/cluster.c:4425-4516;
valkey-9.1.2 src/cluster_legacy.c:6630-6720, the same) sets a master's `cluster_state:fail` while it reaches
fewer than a majority of the slot-serving masters it knows ("among the minority"): every fresh node is,
until slots exist and it has met their masters. Back in the majority, a master turns `ok` only once the
rejoin delay has passed since that last moment: `cluster-node-timeout` clamped to 500-5000 ms
(CLUSTER_MIN/MAX_REJOIN_DELAY). So with the usual 5000 ms every master of a fresh cluster stays `fail` about
5 s after the last MEET. (A node started less than 2 s earlier skips the whole function,
CLUSTER_WRITABLE_DELAY, and never records that moment: why formations right after start look faster.)

A fresh formation (no slot served anywhere, no key anywhere) lowers the timeout to FORMATION_NODE_TIMEOUT_MS
while it forms and restores the configured value before it returns, also when it fails. A run that was
killed before restoring leaves nodes at the short value: every run (of any kind) first puts back each node
whose timeout differs from the configured one, and `helm redis verify` flags such a node. Never lowered on a
cluster that holds slots or keys (scale-out, repair): there a short timeout means false failovers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from .nodes import Connector, NodeAddress, parallel

KEY = "cluster-node-timeout"
FORMATION_NODE_TIMEOUT_MS = 500  # the shortest rejoin delay Redis has (CLUSTER_MIN_REJOIN_DELAY)


def read_node_timeout(connector: Connector, address: NodeAddress) -> int:
    return int(connector.client(address).config_get(KEY)[KEY])


def read_node_timeouts(connector: Connector, addresses: Iterable[NodeAddress]) -> dict[NodeAddress, int]:
    addresses = list(addresses)
    values = parallel(lambda a: read_node_timeout(connector, a), addresses)
    return dict(zip(addresses, values, strict=True))


def prevailing(timeouts: Iterable[int]) -> int | None:
    """The value most nodes have (the configured one, when nothing else says which it is)."""
    counted = Counter(timeouts).most_common(1)
    return counted[0][0] if counted else None


def set_node_timeout(connector: Connector, addresses: Iterable[NodeAddress], milliseconds: int) -> None:
    parallel(lambda a: connector.client(a).config_set(KEY, str(milliseconds)), list(addresses))


def restore_node_timeouts(
    connector: Connector, addresses: Iterable[NodeAddress], configured: int
) -> list[NodeAddress]:
    """Put `configured` back on every node that has another value; returns those nodes."""
    differing = [a for a, ms in read_node_timeouts(connector, addresses).items() if ms != configured]
    set_node_timeout(connector, differing, configured)
    return differing


@contextmanager
def short_node_timeout(
    connector: Connector,
    addresses: Iterable[NodeAddress],
    configured: int,
    progress: Callable[[str], None] = lambda _msg: None,
) -> Iterator[None]:
    """Within the block every node runs FORMATION_NODE_TIMEOUT_MS; afterwards `configured` again."""
    addresses = list(addresses)
    if configured <= FORMATION_NODE_TIMEOUT_MS:
        yield
        return
    set_node_timeout(connector, addresses, FORMATION_NODE_TIMEOUT_MS)
    progress(f"{KEY} {FORMATION_NODE_TIMEOUT_MS} ms while forming (fresh nodes: no slot, no key)")
    try:
        yield
    finally:
        set_node_timeout(connector, addresses, configured)
        progress(f"{KEY} {configured} ms again")
