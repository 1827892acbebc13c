"""The server engines of issue 13 (Redis 7.0 and 8.0, Valkey 8.1 and 9.1) as tests find them in the tool
cache.

`ci/engines/fetch.sh` installs each one from its Debian suite into $RCH_CACHE/engines/<engine>-<version>
(pinned in ci/engines/engines.env) with wrappers in its bin/ that run the binaries under the engine's own
dynamic loader and libraries. An engine that is not there is an error naming the command that installs it,
never a skipped test. `RCH_ENGINES=redis-7.0,valkey-9.1` narrows the set (default: every engine pinned).
"""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from helm_redis.engine import ServerInfo
from helm_redis.engine_move import parse_version_line
from tests.paths import ROOT, cache_dir

ENGINES_ENV = ROOT / "ci" / "engines" / "engines.env"


class EngineMissing(RuntimeError):
    """An engine pinned in ci/engines/engines.env is not (or not completely) in the tool cache."""


@dataclass(frozen=True)
class Engine:
    name: str  # redis-7.0, valkey-9.1: the family and the release line
    version: str  # upstream version, 7.0.15
    server: Path  # wrapper named as the engine's own server binary (redis-server, valkey-server)
    cli: Path  # its own CLI (redis-cli, valkey-cli)
    debian_version: str = ""

    @property
    def family(self) -> str:
        """'redis' or 'valkey'."""
        return self.name.split("-", 1)[0]

    @property
    def version_info(self) -> tuple[int, ...]:
        return tuple(int(part) for part in self.version.split("."))

    @property
    def server_info(self) -> ServerInfo:
        """The engine as its own `<server> --version` says it (parsed the way the pre-upgrade check does)."""
        said = subprocess.run([str(self.server), "--version"], capture_output=True, text=True, timeout=30)
        return parse_version_line(said.stdout)

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


def _prefix(name: str) -> str:
    return name.upper().replace("-", "_").replace(".", "_")


def pinned(env_file: Path = ENGINES_ENV) -> dict[str, str]:
    """The variables of ci/engines/engines.env (plain KEY=VALUE or KEY="VALUE" lines)."""
    values: dict[str, str] = {}
    for line in env_file.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = " ".join(shlex.split(value))
    return values


def pinned_value(name: str, field: str, env_file: Path = ENGINES_ENV) -> str:
    """One pinned field of an engine (VERSION, IMAGE, ...), e.g. pinned_value("valkey-9.1", "IMAGE")."""
    return pinned(env_file)[f"{_prefix(name)}_{field}"]


def engine_names(env_file: Path = ENGINES_ENV) -> list[str]:
    """Every engine pinned, or the ones RCH_ENGINES names (comma or space separated)."""
    every = pinned(env_file)["ENGINES"].split()
    wanted = os.environ.get("RCH_ENGINES", "").replace(",", " ").split()
    unknown = [name for name in wanted if name not in every]
    if unknown:
        raise ValueError(f"RCH_ENGINES names unknown engine(s) {unknown}; engines: {every}")
    return wanted or every


def engine(name: str, env_file: Path = ENGINES_ENV, cache: Path | None = None) -> Engine:
    """The engine `name` from the tool cache; EngineMissing (naming ci/engines/fetch.sh) when it is not
    there."""
    values = pinned(env_file)
    prefix = _prefix(name)
    if f"{prefix}_VERSION" not in values:
        raise ValueError(f"{name} is not an engine of {env_file} ({values.get('ENGINES', '')})")
    version = values[f"{prefix}_VERSION"]
    debian_version = values[f"{prefix}_DEBIAN_VERSION"]
    server_name, cli_name = values[f"{prefix}_BINARIES"].split()
    directory = (cache or cache_dir()) / "engines" / f"{name}-{version}"
    fetch = f"run `ci/engines/fetch.sh {name}`"
    marker = directory / ".complete"
    if not marker.is_file():
        raise EngineMissing(f"engine {name} {version} is not in the tool cache ({directory}): {fetch}")
    recorded = marker.read_text().split()
    if recorded[:3] != [name, version, debian_version]:
        raise EngineMissing(
            f"engine {name} in {directory} is {' '.join(recorded[1:3])}, engines.env pins "
            f"{version} {debian_version}: {fetch}"
        )
    server, cli = directory / "bin" / server_name, directory / "bin" / cli_name
    for path in (server, cli):
        if not os.access(path, os.X_OK):
            raise EngineMissing(f"engine {name}: {path} is missing or not executable: {fetch}")
    return Engine(name, version, server, cli, debian_version)


def available_engines(names: list[str] | None = None) -> list[Engine]:
    """Every engine asked for (default: engine_names()), each from the tool cache; EngineMissing names the
    ones not there and the command that installs them."""
    found: list[Engine] = []
    missing: list[str] = []
    for name in names if names is not None else engine_names():
        try:
            found.append(engine(name))
        except EngineMissing as error:
            missing.append(str(error))
    if missing:
        raise EngineMissing("; ".join(missing))
    return found
