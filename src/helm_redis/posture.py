"""The security posture `verify` reports: what a node lets in, read from the nodes themselves. Each
missing protection is a warning, never a failure: an open cluster can be a deliberate choice.

Redis level only; whether a NetworkPolicy selects the pods is Kubernetes' business (release.py).
"""

from __future__ import annotations

import redis

from .health import Check
from .nodes import Connector, NodeAddress, parallel

TLS_SETTINGS = ("tls-port", "tls-cluster", "tls-replication")


def answers_without_login(connector: Connector, address: NodeAddress) -> bool | None:
    """True when the node runs a command for a connection that never logged in; None: no answer."""
    anonymous = connector.anonymous()
    try:
        anonymous.client(address).ping()
        return True
    except redis.AuthenticationError:
        return False
    except redis.ResponseError as error:
        return False if "NOAUTH" in str(error) else None
    except redis.RedisError:
        return None
    finally:
        anonymous.close()


def _settings(connector: Connector, address: NodeAddress) -> dict[str, str] | str:
    try:
        client = connector.client(address)
        found: dict[str, str] = {}
        for name in TLS_SETTINGS:
            found.update(client.config_get(name))
        flags = client.execute_command("ACL", "GETUSER", "default") or {}
        if isinstance(flags, list):  # RESP2 without the client's parser: a flat list
            flags = dict(zip(flags[::2], flags[1::2], strict=False))
        found["default-flags"] = " ".join(flags.get("flags", []))
        return found
    except redis.RedisError as error:
        return str(error).splitlines()[0]


def security_checks(connector: Connector, addresses: list[NodeAddress], names: dict[str, str]) -> list[Check]:
    def label(address: NodeAddress) -> str:
        return names.get(str(address), str(address))

    open_nodes = [
        label(a)
        for a, answered in zip(
            addresses, parallel(lambda a: answers_without_login(connector, a), addresses), strict=True
        )
        if answered
    ]
    settings = dict(zip(addresses, parallel(lambda a: _settings(connector, a), addresses), strict=True))
    unreadable = {label(a): s for a, s in settings.items() if isinstance(s, str)}
    read = {label(a): s for a, s in settings.items() if isinstance(s, dict)}
    checks = [
        Check(
            "auth-required",
            "warn" if open_nodes else "pass",
            f"answers without a login: {', '.join(open_nodes)} (auth.enabled)"
            if open_nodes
            else "every node refuses a connection that did not log in",
        )
    ]
    default_on = [name for name, s in read.items() if "off" not in s["default-flags"].split()]
    checks.append(
        Check(
            "default-user-off",
            "warn" if default_on or not read else "pass",
            f"the `default` user is enabled on {', '.join(default_on)}"
            if default_on
            else "the `default` user is disabled everywhere"
            if read
            else f"could not read the users: {next(iter(unreadable.values()), 'no node answered')}",
        )
    )
    plain = sorted(
        {setting for s in read.values() for setting in TLS_SETTINGS if s.get(setting, "0") in ("0", "no", "")}
    )
    checks.append(
        Check(
            "tls",
            "warn" if plain or not read else "pass",
            f"not encrypted: {', '.join(plain)} off"
            if plain
            else "clients, cluster bus and replication use TLS"
            if read
            else "could not read the TLS settings",
        )
    )
    return checks
