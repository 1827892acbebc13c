"""Bring the ACL users of running nodes in line with the password files, live: a password rotation, an
added application user, or authentication switched on while the nodes run, without restarting a node.
(A node that starts reads the same files through its config include: credentials.UserSet.)
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from .credentials import REPLICATION_USER, UserSet
from .nodes import Connector, NodeAddress, parallel


@dataclass
class AppliedUsers:
    users: list[str]
    applied: list[NodeAddress]
    skipped: dict[NodeAddress, str]  # node -> why (down, restarting: it reads the files when it starts)


def apply_users(connector: Connector, addresses: list[NodeAddress], users: UserSet) -> AppliedUsers:
    """On every node: the replication login first, then every user (`reset` + rules, so the result never
    depends on what was there). That order keeps replicas connected through a rotation done as documented
    (add the new password, then remove the old one): the login always names a password every master
    already accepts. The `default` user is left as it is: a node started with authentication has it off
    already (its include), and one that still runs open (authentication being switched on) keeps its
    clients and its probes until its rolling restart turns it off."""
    rules = [(name, words) for name, words in users.acl_rules() if name != "default"]

    def apply(address: NodeAddress) -> str | None:
        try:
            client = connector.client(address)
            client.execute_command(
                "CONFIG", "SET", "masteruser", REPLICATION_USER, "masterauth", users.replication[0]
            )
            for name, words in rules:
                client.execute_command("ACL", "SETUSER", name, *words)
        except redis.RedisError as error:
            # Never echo the command: it holds the login. The error names only what Redis said.
            return type(error).__name__ + (
                f": {error}" if not isinstance(error, redis.AuthenticationError) else ""
            )
        return None

    outcomes = parallel(apply, addresses)
    skipped = {a: why for a, why in zip(addresses, outcomes, strict=True) if why is not None}
    return AppliedUsers([name for name, _ in rules], [a for a in addresses if a not in skipped], skipped)
