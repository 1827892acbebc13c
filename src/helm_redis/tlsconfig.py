"""TLS of the tools' connections: which files (the chart's mounted TLS Secret) and which name every node's
certificate must carry.

Redis level. All nodes of a release share one certificate, issued for the release's names; the tools reach
nodes by pod IP or through a port-forward on 127.0.0.1, neither of which is in it. So every connection
checks the certificate chain against `ca.crt` *and* the release's name (`server_name`), whatever address
the socket went to: a port-forward is verified as strictly as a direct connection.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from .errors import UsageError

# The keys of a kubernetes.io/tls Secret with its CA, as the chart mounts them.
CA_FILE, CERT_FILE, KEY_FILE = "ca.crt", "tls.crt", "tls.key"


@dataclass(frozen=True)
class TlsSettings:
    ca_file: Path
    cert_file: Path
    key_file: Path
    server_name: str | None  # None: the chain is checked, not the name (only for --nodes without a name)

    @classmethod
    def from_directory(cls, directory: Path, server_name: str | None) -> TlsSettings:
        """The three files of a mounted TLS Secret; a missing one is refused, naming it and the fix."""
        files = [directory / name for name in (CA_FILE, CERT_FILE, KEY_FILE)]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise UsageError(
                f"--tls-dir {directory} lacks {', '.join(missing)}: give the directory of a TLS Secret "
                f"with {CA_FILE}, {CERT_FILE} and {KEY_FILE}"
            )
        return cls(*files, server_name=server_name or None)

    def pool_options(self) -> dict[str, Any]:
        """Connection pool options of redis-py for a TLS connection verified as described above."""
        return {
            "connection_class": VerifiedNameConnection,
            "ssl_ca_certs": str(self.ca_file),
            "ssl_certfile": str(self.cert_file),
            "ssl_keyfile": str(self.key_file),
            "ssl_cert_reqs": ssl.CERT_REQUIRED,
            "ssl_check_hostname": self.server_name is not None,
            "ssl_server_name": self.server_name,
        }


class VerifiedNameConnection(redis.SSLConnection):
    """An SSL connection that checks the certificate for `ssl_server_name` instead of the host it dialled
    (a pod IP, or 127.0.0.1 of a port-forward). redis-py uses the dialled host as the name to verify and
    offers no option for another one, so the host is swapped for the handshake only."""

    def __init__(self, ssl_server_name: str | None = None, **kwargs: Any) -> None:
        self.ssl_server_name = ssl_server_name
        super().__init__(**kwargs)

    def _wrap_socket_with_ssl(self, sock):
        if self.ssl_server_name is None:
            return super()._wrap_socket_with_ssl(sock)
        dialled, self.host = self.host, self.ssl_server_name
        try:
            return super()._wrap_socket_with_ssl(sock)
        finally:
            self.host = dialled
