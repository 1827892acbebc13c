"""Typed errors of the domain; the CLI turns them into one-line messages and exit codes."""


class HelmRedisError(Exception):
    """Base class: a failure that is explained in one line, without a traceback."""

    exit_code = 2


class UsageError(HelmRedisError):
    """The command was given values that cannot work together."""


class NodeUnreachable(HelmRedisError):
    """A Redis node did not answer (refused, timed out, wrong password)."""


class NodesNotReady(HelmRedisError):
    """Some nodes did not answer PING before the deadline."""

    exit_code = 1


class ReleaseNotFound(HelmRedisError):
    """No Helm release of that name in the namespace."""


class PodsNotFound(HelmRedisError):
    """The release has no Redis pods, or a named pod does not exist."""


class KubernetesUnavailable(HelmRedisError):
    """The Kubernetes API could not be reached or refused the request."""


class UnexpectedData(HelmRedisError):
    """A node holds keys (or belongs to another cluster) where the plan expects an empty node."""

    exit_code = 1


class ClusterNotComplete(HelmRedisError):
    """The cluster did not reach the done criteria before the deadline."""

    exit_code = 1


class PlanError(HelmRedisError):
    """The requested shape cannot be built from the nodes at hand."""
