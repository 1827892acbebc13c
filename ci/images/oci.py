"""Assemble an OCI image archive (oci-layout tar) from layer tarballs, without any engine.

    python3 oci.py OUT.tar NAME:TAG --layer L1.tar [--layer L2.tar ...] [--entrypoint JSON] [--cmd JSON]
                   [--env K=V ...] [--user U] [--workdir D] [--label K=V ...] [--arch amd64|arm64]

--arch is the OCI architecture of the layers (default: the host's, uname -m mapped to OCI names). Prints
the manifest digest. The archive is what `ctr images import` and `crane push` (unpacked) read; the image
name is carried in the index annotations (io.containerd.image.name and org.opencontainers.image.ref.name).
Layers are stored gzip-compressed, as registries serve them (a third of the bytes to push and pull); the
compressed copy is made once, reproducibly (no name, mtime 0), and kept beside the layer as LAYER.gz.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import platform
import tarfile

BLOCK = 1 << 20
# uname -m -> OCI/Go architecture names (image-spec config.md: "architecture" uses GOARCH values)
OCI_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def host_arch() -> str:
    machine = platform.machine().lower()
    if machine not in OCI_ARCH:
        raise SystemExit(f"oci.py: no OCI architecture known for machine {machine!r}: pass --arch")
    return OCI_ARCH[machine]


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(BLOCK):
            h.update(chunk)
    return h.hexdigest()


def gzipped(path: str) -> str:
    """LAYER.gz beside the layer, made once; reproducible: no file name, mtime 0, fixed level."""
    out = path + ".gz"
    if not os.path.exists(out):
        with (
            open(path, "rb") as src,
            open(out + ".part", "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz,
        ):
            while chunk := src.read(BLOCK):
                gz.write(chunk)
        os.replace(out + ".part", out)
    return out


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("ref")
    ap.add_argument("--layer", action="append", required=True)
    ap.add_argument("--entrypoint")
    ap.add_argument("--cmd")
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--user")
    ap.add_argument("--workdir", default="/")
    ap.add_argument("--label", action="append", default=[])
    ap.add_argument("--arch", choices=sorted(set(OCI_ARCH.values())), help="default: the host's")
    a = ap.parse_args()
    arch = a.arch or host_arch()

    layers = []  # (compressed file, its digest, its size, diff_id = the uncompressed layer's digest)
    for path in a.layer:
        blob = gzipped(path)
        layers.append((blob, sha256_file(blob), os.path.getsize(blob), sha256_file(path)))

    env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", *a.env]
    cfg: dict = {"Env": env, "WorkingDir": a.workdir}
    if a.entrypoint:
        cfg["Entrypoint"] = json.loads(a.entrypoint)
    if a.cmd:
        cfg["Cmd"] = json.loads(a.cmd)
    if a.user:
        cfg["User"] = a.user
    if a.label:
        cfg["Labels"] = dict(kv.split("=", 1) for kv in a.label)
    config = {
        "architecture": arch,
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}" for *_, diff_id in layers]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "ci/images/build.sh"} for _ in layers],
    }
    config_b = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    config_d = hashlib.sha256(config_b).hexdigest()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": f"sha256:{config_d}",
            "size": len(config_b),
        },
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": f"sha256:{d}", "size": s}
            for _, d, s, _ in layers
        ],
    }
    manifest_b = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    manifest_d = hashlib.sha256(manifest_b).hexdigest()
    tag = a.ref.rsplit(":", 1)[1]
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": f"sha256:{manifest_d}",
                "size": len(manifest_b),
                "platform": {"architecture": arch, "os": "linux"},
                "annotations": {"io.containerd.image.name": a.ref, "org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    tmp = a.out + ".tmp"
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add_bytes(tar, "index.json", json.dumps(index).encode())
        add_bytes(tar, f"blobs/sha256/{config_d}", config_b)
        add_bytes(tar, f"blobs/sha256/{manifest_d}", manifest_b)
        seen = set()
        for path, d, *_ in layers:
            if d not in seen:
                seen.add(d)
                tar.add(path, arcname=f"blobs/sha256/{d}", recursive=False)
    os.replace(tmp, a.out)
    print(f"sha256:{manifest_d}")


if __name__ == "__main__":
    main()
