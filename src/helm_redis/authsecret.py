"""The Secret of the cluster's passwords, made once: the chart's pre-install hook creates it when it is
missing (random passwords, never in values or templates, so every render of the chart is identical),
adds a key a new application user needs, and never changes or deletes a key that exists. It carries no
Helm or Argo CD ownership: upgrades, syncs and uninstalls keep it.

Kubernetes level; what the passwords are for is credentials' business.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field

from .credentials import password_lines
from .errors import KubernetesUnavailable, PasswordSecretMissing

# 32 random bytes, URL-safe: no character a config parser or a shell would treat specially.
PASSWORD_BYTES = 32


@dataclass
class SecretOutcome:
    name: str
    created: bool
    added: list[str]  # keys given a new password (never their values)
    passwords: dict[str, tuple[str, ...]] = field(repr=False, default_factory=dict)  # key -> its lines


def _lines(encoded: str) -> tuple[str, ...]:
    return password_lines(base64.b64decode(encoded).decode())


def _empty_keys(data: dict[str, str], keys: list[str]) -> list[str]:
    return [k for k in keys if k in data and not _lines(data[k])]


def ensure_secret(api, namespace: str, name: str, keys: list[str], create: bool) -> SecretOutcome:
    """With `create`: make the Secret or add its missing keys, each a fresh random password. Without (an
    existing Secret the user owns): only check that every key is there and not empty."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    def fresh() -> str:
        return base64.b64encode(secrets.token_urlsafe(PASSWORD_BYTES).encode()).decode()

    try:
        secret = api.read_namespaced_secret(name, namespace, _request_timeout=10)
    except ApiException as error:
        if error.status != 404:
            raise KubernetesUnavailable(
                f"reading Secret {name!r} failed: {error.status} {error.reason}"
            ) from None
        if not create:
            raise PasswordSecretMissing(
                f"auth.existingSecret names Secret {name!r}, which does not exist in namespace "
                f"{namespace!r}: create it with the keys {', '.join(keys)} (one password per line), or unset "
                "auth.existingSecret to let the chart generate one"
            ) from None
        body = client.V1Secret(
            metadata=client.V1ObjectMeta(
                name=name,
                labels={"app.kubernetes.io/name": "redis-cluster", "app.kubernetes.io/component": "auth"},
                annotations={
                    "redis-cluster.io/generated-by": "the chart's pre-install hook; kept on upgrade and "
                    "uninstall (delete it yourself once the data is gone)"
                },
            ),
            type="Opaque",
            data={key: fresh() for key in keys},
        )
        try:
            api.create_namespaced_secret(namespace, body, _request_timeout=10)
        except ApiException as error:
            if error.status == 409:  # made meanwhile by a concurrent run: use that one
                return ensure_secret(api, namespace, name, keys, create)
            raise KubernetesUnavailable(
                f"creating Secret {name!r} failed: {error.status} {error.reason}"
            ) from None
        return SecretOutcome(name, True, list(keys), {k: _lines(v) for k, v in body.data.items()})
    data = secret.data or {}
    missing = [k for k in keys if k not in data]
    empty = _empty_keys(data, keys)
    if empty:
        raise PasswordSecretMissing(
            f"Secret {name!r} has empty keys {', '.join(empty)}: put a password in each (an empty password "
            "would turn authentication off)"
        )
    if missing and not create:
        raise PasswordSecretMissing(
            f"Secret {name!r} (auth.existingSecret) lacks the keys {', '.join(missing)}: add them, one "
            "password per line"
        )
    if missing:
        patch = {"data": {key: fresh() for key in missing}}
        data = {**data, **patch["data"]}
        try:
            api.patch_namespaced_secret(name, namespace, patch, _request_timeout=10)
        except ApiException as error:
            raise KubernetesUnavailable(
                f"adding keys to Secret {name!r} failed: {error.status} {error.reason}"
            ) from None
    return SecretOutcome(name, False, missing, {k: _lines(data[k]) for k in keys})
