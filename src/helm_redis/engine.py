"""Which server engine a node runs (Redis or Valkey, and its version), read from `INFO server`, and what it
supports. Redis level: no Kubernetes.

Valkey answers `redis_version:7.2.4` whatever its own version (a fixed compatibility value), and adds
`server_name:valkey`, `valkey_version` and `server_mode` (instead of `redis_mode`): the family comes from
those, and a Valkey's version only ever from `valkey_version`. Features are derived from the detected
version, as the sources of each engine say (ci/engines/README.md, feature table):

- `addslotsrange`: CLUSTER ADDSLOTSRANGE, Redis >= 7.0 (every Valkey);
- `shards`: CLUSTER SHARDS, Redis >= 7.0 (every Valkey);
- `availability_zone`: the `availability-zone` config, Valkey >= 8.1;
- `atomic_slot_migration`: CLUSTER MIGRATESLOTS, Valkey >= 9.0 (Redis 8.4's `CLUSTER MIGRATION` is
  another command, not this one).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields

import redis

from .nodes import Connector, NodeAddress, parallel, try_each, unreachable

REDIS, VALKEY = "redis", "valkey"


@dataclass(frozen=True)
class Features:
    """What an engine supports (or, from common_features, what every node of a set supports)."""

    addslotsrange: bool = False
    shards: bool = False
    availability_zone: bool = False
    atomic_slot_migration: bool = False

    def names(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name)]


@dataclass(frozen=True, order=True)
class ServerInfo:
    """One node's engine: family ('redis' or 'valkey') and version tuple, as INFO server reports them."""

    family: str
    version: tuple[int, ...]
    mode: str = ""  # cluster | standalone | sentinel (redis_mode, or Valkey's server_mode)

    @property
    def version_text(self) -> str:
        return ".".join(str(part) for part in self.version)

    def __str__(self) -> str:
        return f"{self.family} {self.version_text}"

    @property
    def features(self) -> Features:
        redis7 = self.family == VALKEY or self.version >= (7, 0)
        return Features(
            addslotsrange=redis7,
            shards=redis7,
            availability_zone=self.family == VALKEY and self.version >= (8, 1),
            atomic_slot_migration=self.family == VALKEY and self.version >= (9, 0),
        )


def parse_version(text: str) -> tuple[int, ...]:
    """'9.1.2' -> (9, 1, 2); a suffix on a part ('8.0.0-rc1') is dropped; ValueError when there is none."""
    parts: list[int] = []
    for part in text.strip().split("."):
        digits = re.match(r"\d+", part)
        if digits is None:
            break
        parts.append(int(digits.group()))
        if digits.group() != part:
            break
    if not parts:
        raise ValueError(f"{text!r} is not a version")
    return tuple(parts)


def parse_server_info(info: Mapping[str, object] | str) -> ServerInfo:
    """The engine from `INFO server`, as text or as redis-py's dict."""
    fields_ = _fields(info) if isinstance(info, str) else {k: str(v) for k, v in info.items()}
    if "valkey_version" in fields_ or fields_.get("server_name", "").lower() == VALKEY:
        if "valkey_version" not in fields_:
            raise ValueError("INFO server says server_name:valkey but has no valkey_version")
        family, version = VALKEY, fields_["valkey_version"]
    elif "redis_version" in fields_:
        family, version = REDIS, fields_["redis_version"]
    else:
        raise ValueError("INFO server has neither valkey_version nor redis_version")
    mode = fields_.get("server_mode", fields_.get("redis_mode", ""))
    return ServerInfo(family, parse_version(version), mode)


def _fields(text: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and ":" in line:
            key, _, value = line.partition(":")
            result[key.strip()] = value.strip()
    return result


def read_server_info(connector: Connector, address: NodeAddress) -> ServerInfo:
    """One node's engine (INFO server); NodeUnreachable/NodeRefused when it does not answer."""
    try:
        return parse_server_info(connector.client(address).info("server"))
    except redis.RedisError as error:
        raise unreachable(address, error) from None


def read_server_infos(
    connector: Connector, addresses: Iterable[NodeAddress]
) -> dict[NodeAddress, ServerInfo]:
    """Every node's engine, read in parallel; the first node that does not answer raises."""
    addresses = list(addresses)
    found = parallel(lambda address: read_server_info(connector, address), addresses)
    return dict(zip(addresses, found, strict=True))


def try_read_server_infos(
    connector: Connector, addresses: Iterable[NodeAddress]
) -> dict[NodeAddress, ServerInfo]:
    """The engine of every node that answers (a node restarting in a rollout is left out); a refused
    password is raised (nodes.try_each)."""
    addresses = list(addresses)
    found = try_each(lambda address: read_server_info(connector, address), addresses)
    return {a: info for a, info in zip(addresses, found, strict=True) if isinstance(info, ServerInfo)}


def common_features(infos: Iterable[ServerInfo]) -> Features:
    """What every one of these engines supports (nothing for an empty set)."""
    every = [info.features for info in infos]
    if not every:
        return Features()
    return Features(**{f.name: all(getattr(x, f.name) for x in every) for f in fields(Features)})


def mixed(infos: Iterable[ServerInfo]) -> bool:
    """Do these nodes run more than one engine or version (a migration between engines under way)?"""
    return len({(info.family, info.version) for info in infos}) > 1
