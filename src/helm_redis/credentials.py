"""Who connects to Redis as whom: ACL users whose passwords come from files (a mounted Secret), never
from arguments or the environment of redis-server.

Users: `default` is disabled (a connection must AUTH), `admin` runs the tools (hook, reconciler, probes,
preStop, helm test, the plugin), `replication` is every replica's `masteruser`, and the application users
are named with their ACL rules in the chart's values. Each password file holds one or more passwords, one
per line: during a rotation Redis accepts all of them and the tools try them in order.

Redis level only: the files are read here, the Secret behind them is Kubernetes' business (authsecret).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import PasswordFileError

ADMIN_USER = "admin"
REPLICATION_USER = "replication"
# `probe` is kept free for a per-pod user of the probes (the chart refuses it too).
RESERVED_USERS = frozenset({"default", ADMIN_USER, REPLICATION_USER, "probe"})
ADMIN_RULES = "~* &* +@all"
# What a replica sends its master (https://redis.io/docs/latest/operate/oss_and_stack/management/security/acl/).
REPLICATION_RULES = "-@all +psync +replconf +ping"
USER_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


def password_key(user: str) -> str:
    """The Secret key (and file name) of a user's passwords."""
    return f"{user}-password"


def password_lines(text: str) -> tuple[str, ...]:
    """The passwords of a file's or a Secret key's text: one per line, blank lines and edge spaces
    dropped."""
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def read_passwords(path: Path) -> tuple[str, ...]:
    """The passwords in a file, one per line. An empty file is refused: Redis would take an empty
    password as no password at all."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise PasswordFileError(
            f"password file {path} does not exist: mount the Secret that holds it, or point "
            "--password-file (REDIS_PASSWORD_FILE) at it"
        ) from None
    passwords = password_lines(text)
    if not passwords:
        raise PasswordFileError(
            f"password file {path} is empty: put a password in it (an empty password would turn "
            "authentication off)"
        )
    return passwords


@dataclass(frozen=True)
class Credentials:
    """A user and its passwords (all are tried, in order). From a file, `current()` reads it again: a
    mounted Secret changes under a long-running tool (the reconciler) during a rotation."""

    username: str | None
    passwords: tuple[str, ...] = field(repr=False)
    source: Path | None = None

    @classmethod
    def from_file(cls, username: str | None, path: Path) -> Credentials:
        return cls(username, read_passwords(path), path)

    def current(self) -> tuple[str, ...]:
        if self.source is None:
            return self.passwords
        try:
            return read_passwords(self.source)
        except PasswordFileError:  # being replaced by the kubelet this instant: the last good read
            return self.passwords


@dataclass(frozen=True)
class AppUser:
    name: str
    rules: str


def parse_app_users(text: str) -> list[AppUser]:
    """`<name> <rules...>` per line (the chart's `acl-users`), each name checked."""
    users: list[AppUser] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, rules = line.strip().partition(" ")
        if not USER_NAME.match(name) or name in RESERVED_USERS:
            raise PasswordFileError(
                f"line {number} of the application users names {name!r}: use lowercase letters, digits, "
                f"'_' and '-' (at most 32), not one of {', '.join(sorted(RESERVED_USERS))}"
            )
        if not rules.strip():
            raise PasswordFileError(f"application user {name!r} has no ACL rules: give it some")
        users.append(AppUser(name, rules.strip()))
    return users


@dataclass(frozen=True)
class UserSet:
    """Every ACL user of the cluster with its passwords: what a node is configured with."""

    admin: tuple[str, ...] = field(repr=False)
    replication: tuple[str, ...] = field(repr=False)
    apps: tuple[tuple[AppUser, tuple[str, ...]], ...] = field(repr=False)

    @classmethod
    def from_directory(cls, directory: Path, apps: Iterable[AppUser] = ()) -> UserSet:
        return cls.from_lookup(lambda user: read_passwords(directory / password_key(user)), apps)

    @classmethod
    def from_lookup(
        cls, passwords_of: Callable[[str], tuple[str, ...]], apps: Iterable[AppUser] = ()
    ) -> UserSet:
        """From any source of each user's passwords (files, a Secret read through the API)."""
        return cls(
            passwords_of(ADMIN_USER),
            passwords_of(REPLICATION_USER),
            tuple((user, passwords_of(user.name)) for user in apps),
        )

    @property
    def admin_credentials(self) -> Credentials:
        return Credentials(ADMIN_USER, self.admin)

    def acl_rules(self) -> list[tuple[str, list[str]]]:
        """(user, ACL SETUSER arguments) for every user; the same words serve a `user` line of the
        config and a live `ACL SETUSER`. `reset` first: the result never depends on what was there."""
        users = [
            (ADMIN_USER, self.admin, ADMIN_RULES),
            (REPLICATION_USER, self.replication, REPLICATION_RULES),
        ]
        users += [(user.name, passwords, user.rules) for user, passwords in self.apps]
        rules = [("default", ["reset", "off"])]
        for name, passwords, user_rules in users:
            hashes = [f"#{hashlib.sha256(p.encode()).hexdigest()}" for p in passwords]
            rules.append((name, ["reset", "on", *hashes, *user_rules.split()]))
        return rules

    def config_include(self) -> str:
        """The redis.conf include a node starts with: its users (hashed passwords only) and the
        replication login (`masterauth` is the one clear-text password Redis must keep)."""
        lines = ["# Written at start from the mounted Secret; never in the ConfigMap or argv."]
        lines += [f"user {name} {' '.join(words)}" for name, words in self.acl_rules()]
        lines += [f"masteruser {REPLICATION_USER}", f"masterauth {quote_config_value(self.replication[0])}"]
        return "\n".join(lines) + "\n"


def quote_config_value(value: str) -> str:
    """A redis.conf argument that survives its parser (sdssplitargs) whatever characters it holds."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    escaped = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in escaped)
    return f'"{escaped}"'


def write_config_include(path: Path, users: UserSet) -> None:
    """Write the include readable by its owner only (the Redis container runs as the same user)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.touch(mode=0o600)
    temporary.chmod(0o600)
    temporary.write_text(users.config_include())
    temporary.replace(path)
