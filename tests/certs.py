"""Test certificates made with the `openssl` command: a CA and node certificates as the chart expects them
(one certificate for every node, usable as server and as client, named by DNS names and 127.0.0.1)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(directory: Path, name: str = "test-ca") -> Path:
    """ca.crt and ca.key in `directory` (a P-256 key, valid two days)."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", f"/CN={name}",
        cwd=directory,
    )  # fmt: skip
    return directory


def issue(ca: Path, directory: Path, dns_names: list[str], common_name: str = "redis-node") -> Path:
    """A TLS Secret's files in `directory`: tls.crt and tls.key signed by `ca`, and a copy of ca.crt."""
    directory.mkdir(parents=True, exist_ok=True)
    alt_names = ",".join([*(f"DNS:{name}" for name in dns_names), "IP:127.0.0.1"])
    (directory / "ext.cnf").write_text(
        f"subjectAltName={alt_names}\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature\n"
    )
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "tls.key", "-out", "tls.csr", "-subj", f"/CN={common_name}",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", "tls.csr", "-CA", str(ca / "ca.crt"), "-CAkey", str(ca / "ca.key"),
        "-CAcreateserial", "-out", "tls.crt", "-days", "1", "-extfile", "ext.cnf",
        cwd=directory,
    )  # fmt: skip
    (directory / "ca.crt").write_bytes((ca / "ca.crt").read_bytes())
    for leftover in ("tls.csr", "ext.cnf"):
        (directory / leftover).unlink()
    return directory


def fingerprint(certificate_pem: bytes) -> str:
    """SHA-256 fingerprint of a PEM certificate (to tell which one a server presents)."""
    import hashlib
    import ssl

    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(certificate_pem.decode())).hexdigest()
