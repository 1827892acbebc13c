"""Test certificates made with the `openssl` command: a CA and node certificates as the chart expects them
(one certificate for every node, usable as server and as client, named by DNS names and 127.0.0.1)."""

from __future__ import annotations

import hashlib
import os
import ssl
import subprocess
from collections.abc import Iterable
from pathlib import Path

P256 = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


def _openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def make_ca(directory: Path, name: str = "redis-cluster test CA") -> Path:
    """ca.crt and ca.key in `directory` (a P-256 key, valid two days)."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req", "-x509", *P256, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    return directory


def issue(
    ca: Path,
    directory: Path,
    dns_names: Iterable[str] = ("localhost",),
    common_name: str = "redis-node",
    usages: str = "serverAuth,clientAuth",
) -> Path:
    """A TLS Secret's files in `directory`: tls.crt and tls.key signed by `ca` (names: `dns_names` and
    127.0.0.1; extended key usage: `usages`), and a copy of ca.crt."""
    directory.mkdir(parents=True, exist_ok=True)
    alt_names = ",".join(["IP:127.0.0.1", *(f"DNS:{name}" for name in dns_names)])
    (directory / "ext.cnf").write_text(
        f"subjectAltName={alt_names}\nextendedKeyUsage={usages}\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
    )
    subject = f"/CN={common_name}"
    _openssl("req", *P256, "-keyout", "tls.key", "-out", "tls.csr", "-subj", subject, cwd=directory)
    _openssl(
        "x509", "-req", "-in", "tls.csr", "-CA", str(ca / "ca.crt"), "-CAkey", str(ca / "ca.key"),
        "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "2",
        "-extfile", "ext.cnf", "-out", "tls.crt",
        cwd=directory,
    )  # fmt: skip
    (directory / "ca.crt").write_bytes((ca / "ca.crt").read_bytes())
    for leftover in ("tls.csr", "ext.cnf"):
        (directory / leftover).unlink()
    return directory


def fingerprint(certificate_pem: bytes) -> str:
    """SHA-256 fingerprint of a PEM certificate (to tell which one a server presents)."""
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(certificate_pem.decode())).hexdigest()
