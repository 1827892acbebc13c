"""Typed errors of the domain; the CLI turns them into one-line messages and exit codes.

`explain` does the same for the errors of the libraries underneath (Redis, the Kubernetes client, the
network, files) that reach the CLI without a domain error around them.
"""

from __future__ import annotations

import ssl
import sys

AUTH_FIX = "set --user and --password-file, or REDIS_USERNAME and REDIS_PASSWORD_FILE"


class HelmRedisError(Exception):
    """Base class: a failure that is explained in one line, without a traceback."""

    exit_code = 2


class UsageError(HelmRedisError):
    """The command was given values that cannot work together."""


class NodeUnreachable(HelmRedisError):
    """A Redis node did not answer (refused, timed out, wrong password)."""


class NodeRefused(NodeUnreachable):
    """A Redis node answered, with an error that waiting will not cure (wrong password, a node without
    cluster mode, a command the user may not run)."""


class NodesNotReady(HelmRedisError):
    """Some nodes did not answer PING before the deadline."""

    exit_code = 1


class ReleaseNotFound(HelmRedisError):
    """No Helm release of that name in the namespace."""


class PodsNotFound(HelmRedisError):
    """The release has no Redis pods, or a named pod does not exist."""


class KubernetesUnavailable(HelmRedisError):
    """The Kubernetes API could not be reached or refused the request."""


class PasswordSecretMissing(HelmRedisError):
    """The Secret the Redis pods read their password from (or its key) does not exist."""


class PasswordFileError(HelmRedisError):
    """A password file is missing or empty, or the application users' list cannot be used."""


class CorruptNodesConf(HelmRedisError):
    """A node's nodes.conf cannot be read as a cluster config (cut short, garbage, no `myself` line)."""


class UnexpectedData(HelmRedisError):
    """A node holds keys (or belongs to another cluster) where the plan expects an empty node."""

    exit_code = 1


class ClusterNotComplete(HelmRedisError):
    """The cluster did not reach the done criteria before the deadline."""

    exit_code = 1


class ShardLost(HelmRedisError):
    """A shard's master and every replica are gone with their data: its slots have no copy anywhere."""

    exit_code = 1


class EngineMoveRefused(HelmRedisError):
    """An upgrade would move the nodes to an engine that cannot load their data (helm_redis.engine_move)."""

    exit_code = 1


class PlanError(HelmRedisError):
    """The requested shape cannot be built from the nodes at hand."""


def explain(error: BaseException) -> str | None:
    """`<what failed> (<the error, on one line>)` for an error of Redis, of the Kubernetes API, of the
    network or of a file; None for anything else (a bug, whose traceback is what a report needs)."""
    what = _what_failed(error)
    if what is None:
        return None
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return f"{what} ({error.strerror})"  # the file is named already
    return f"{what} ({one_line(error)})"


def _what_failed(error: BaseException) -> str | None:
    import redis

    if isinstance(error, redis.AuthenticationError | redis.exceptions.AuthenticationWrongNumberOfArgsError):
        return f"a Redis node refused the password ({AUTH_FIX})"
    if isinstance(error, redis.ResponseError) and str(error).startswith(("NOAUTH", "WRONGPASS")):
        return f"a Redis node refused the password ({AUTH_FIX})"
    if isinstance(error, redis.exceptions.NoPermissionError):
        return "a Redis node refused a command: NOPERM"
    if isinstance(error, redis.ResponseError):
        return "a Redis node answered with an error"
    if isinstance(error, redis.TimeoutError):
        return "a Redis node did not answer in time"
    if isinstance(error, redis.ConnectionError):
        return "cannot talk to a Redis node"
    if isinstance(error, redis.RedisError):
        return "Redis failed"
    # The Kubernetes client's and urllib3's errors exist only once their modules were imported: look
    # them up there, so that the hook image never pays for importing the Kubernetes client.
    api = sys.modules.get("kubernetes.client.exceptions")
    if api is not None and isinstance(error, api.ApiException):
        return f"the Kubernetes API refused a request: {error.status} {error.reason}"
    if api is not None and isinstance(error, api.OpenApiException):
        return "the Kubernetes client failed"
    config = sys.modules.get("kubernetes.config.config_exception")
    if config is not None and isinstance(error, config.ConfigException):
        return "no usable Kubernetes configuration"
    http = sys.modules.get("urllib3.exceptions")
    if http is not None and isinstance(error, http.HTTPError):
        return "cannot reach the Kubernetes API"
    websocket = sys.modules.get("websocket._exceptions")
    if websocket is not None and isinstance(error, websocket.WebSocketException):
        return "a port-forward through the Kubernetes API failed"
    if isinstance(error, ssl.SSLError):
        return "a TLS connection failed"
    if isinstance(error, OSError):
        return (
            f"cannot use {error.filename}"
            if error.filename is not None
            else "a network or file operation failed"
        )
    return None


def one_line(error: BaseException, limit: int = 300) -> str:
    """An error's text on one line (some carry HTTP bodies or several lines), at most `limit` characters."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
