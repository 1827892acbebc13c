"""Can a running release move to another engine (or version) by a rolling `helm upgrade` of its image?
Redis level, pure rules: no connection, no Kubernetes.

A rolling move restarts each node on the new engine with its own data files (RDB, or the AOF whose base is
an RDB: `aof-use-rdb-preamble yes` on all four engines), and makes new-engine replicas full-sync from
old-engine primaries, whose payload is an RDB the primary writes. So the move works when the target engine
loads the RDB format every running engine writes; it is refused otherwise, before anything changes. The
formats and loader rules are those of each engine's `src/rdb.h` and `rdbLoad` (ci/engines/README.md, "RDB
and AOF formats", with the measured load and replication matrices):

- Redis writes magic `REDIS` and RDB_VERSION 10 (7.0), 11 (7.2), 12 (7.4, 8.0); it loads `REDIS` files up
  to its own version, never `VALKEY`.
- Valkey 7.2 and 8.x write `REDIS` 11; Valkey 9.x writes `VALKEY` 80. Valkey loads `REDIS` files up to 11
  (12-79 are "foreign", refused under the default `rdb-version-check strict`), and Valkey >= 9 also
  `VALKEY` files from 80 up to its own.

The move is one way: once a primary runs the new engine, an old-engine node can neither load its files nor
full-sync from it, so going back is refused the same way (restore a backup written by the old engine).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .engine import REDIS, VALKEY, ServerInfo, parse_version

REDIS_MAGIC, VALKEY_MAGIC = "REDIS", "VALKEY"
# RDB_VERSION by Redis release, oldest first: the first entry whose version is >= the server's applies
# (a Redis newer than the last entry is assumed to write at least the last format).
REDIS_RDB_VERSIONS: tuple[tuple[tuple[int, ...], int], ...] = (
    ((6, 9999), 9),
    ((7, 0, 9999), 10),
    ((7, 2, 9999), 11),
)
REDIS_LATEST_RDB = 12  # Redis 7.4 and 8.0 (redis-8.0.6 src/rdb.h:21)
VALKEY_REDIS_RDB = 11  # Valkey 7.2 and 8.x: the Redis 7.2 format; the newest REDIS-magic file Valkey loads
VALKEY_OWN_RDB = 80  # Valkey 9.0 and 9.1 (valkey-9.1.2 src/rdb.h:53, RDB_VERSION_MAP {11: 7.2.0, 80: 9.0.0})


@dataclass(frozen=True)
class RdbFormat:
    magic: str
    version: int

    def __str__(self) -> str:
        """The file's first 9 bytes: REDIS0010, VALKEY080."""
        return f"{self.magic}{self.version:0{9 - len(self.magic)}d}"


def rdb_written(engine: ServerInfo) -> RdbFormat:
    """The RDB format an engine writes (its dump, its AOF base, its full-sync payload to a replica of the
    same engine)."""
    if engine.family == VALKEY:
        if engine.version >= (9,):
            return RdbFormat(VALKEY_MAGIC, VALKEY_OWN_RDB)
        return RdbFormat(REDIS_MAGIC, VALKEY_REDIS_RDB)
    for newest, version in REDIS_RDB_VERSIONS:
        if engine.version <= newest:
            return RdbFormat(REDIS_MAGIC, version)
    return RdbFormat(REDIS_MAGIC, REDIS_LATEST_RDB)


def loads(reader: ServerInfo, rdb: RdbFormat) -> bool:
    """Does `reader`, with its default (strict) version check, load a file of this format?"""
    own = rdb_written(reader)
    if reader.family == REDIS:
        return rdb.magic == REDIS_MAGIC and rdb.version <= own.version
    if rdb.magic == REDIS_MAGIC:
        return rdb.version <= VALKEY_REDIS_RDB
    return own.magic == VALKEY_MAGIC and VALKEY_OWN_RDB <= rdb.version <= own.version


def move_refusal(running: Iterable[ServerInfo], target: ServerInfo) -> str | None:
    """Why a rolling move of nodes running these engines to `target` cannot work, or None when it can."""
    blocked = sorted({engine for engine in running if not loads(target, rdb_written(engine))})
    if not blocked:
        return None
    names = ", ".join(f"{engine} (RDB {rdb_written(engine)})" for engine in blocked)
    return (
        f"{target} cannot load the data files or full-sync payloads of {names}: its restarted nodes would "
        f"not start and its replicas could not sync. Keep image.engine/repository/tag at the running engine; "
        f"moves are one way, to an engine that reads the older format (README: Moving between engines)"
    )


VERSION_LINE = re.compile(r"^(Redis|Valkey) server v=(\S+)", re.IGNORECASE)


def parse_version_line(text: str) -> ServerInfo:
    """The engine from `redis-server --version` / `valkey-server --version` output
    ('Valkey server v=9.1.2 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=...')."""
    for line in text.splitlines():
        found = VERSION_LINE.match(line.strip())
        if found:
            return ServerInfo(found.group(1).lower(), parse_version(found.group(2)))
    raise ValueError(f"not a server --version line: {text.strip()[:120]!r}")
