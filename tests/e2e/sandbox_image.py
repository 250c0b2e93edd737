"""The pod sandbox ("pause") image, built here: no registry is reachable.

``pause.c`` is compiled statically with gcc and packed as a one-layer OCI image archive
(``oci-layout``, ``index.json``, manifest, config and layer blobs) that
``ctr images import`` reads. Every byte is deterministic except the compiled binary itself.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "pause.c"
IMAGE_REF = "registry.invalid/cnisdk/pause:e2e"
"""The image's name: ``.invalid`` can never resolve, so nothing ever tries to pull it."""

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le"}
_EPOCH = "1970-01-01T00:00:00Z"


class ImageBuildError(RuntimeError):
    """gcc is missing or failed."""


def compile_pause(out: Path) -> Path:
    """``pause.c`` as a static executable at ``out``."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise ImageBuildError("gcc not found (apt-get install gcc libc6-dev)")
    done = subprocess.run(
        [gcc, "-static", "-Os", "-s", "-o", str(out), str(SOURCE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise ImageBuildError(f"gcc failed: {done.stderr.strip()[-2000:]}")
    return out


def _layer(binary: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("pause")
        info.size, info.mode, info.mtime = len(binary), 0o755, 0
        tar.addfile(info, io.BytesIO(binary))
    return buffer.getvalue()


def _json(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def _descriptor(media_type: str, blob: bytes, **extra: Any) -> dict[str, Any]:
    return {
        "mediaType": media_type,
        "digest": "sha256:" + hashlib.sha256(blob).hexdigest(),
        "size": len(blob),
        **extra,
    }


def oci_archive(binary: bytes, ref: str = IMAGE_REF) -> bytes:
    """A one-layer OCI image archive whose entrypoint is ``/pause``, named ``ref``."""
    arch = _ARCH.get(platform.machine(), platform.machine())
    layer = _layer(binary)
    config = _json(
        {
            "architecture": arch,
            "os": "linux",
            "created": _EPOCH,
            "config": {"Entrypoint": ["/pause"], "WorkingDir": "/"},
            "rootfs": {
                "type": "layers",
                "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()],
            },
            "history": [{"created": _EPOCH, "created_by": "tests/e2e/sandbox_image.py"}],
        }
    )
    manifest = _json(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": _descriptor("application/vnd.oci.image.config.v1+json", config),
            "layers": [_descriptor("application/vnd.oci.image.layer.v1.tar", layer)],
        }
    )
    index = _json(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                _descriptor(
                    "application/vnd.oci.image.manifest.v1+json",
                    manifest,
                    platform={"architecture": arch, "os": "linux"},
                    annotations={
                        "io.containerd.image.name": ref,
                        "org.opencontainers.image.ref.name": ref.rpartition(":")[2],
                    },
                )
            ],
        }
    )
    files = {"oci-layout": _json({"imageLayoutVersion": "1.0.0"}), "index.json": index}
    for blob in (layer, config, manifest):
        files["blobs/sha256/" + hashlib.sha256(blob).hexdigest()] = blob
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def build_archive(directory: Path, ref: str = IMAGE_REF) -> Path:
    """Compile the pause binary and write its image archive into ``directory``."""
    binary = compile_pause(directory / "pause")
    archive = directory / "pause-image.tar"
    archive.write_bytes(oci_archive(binary.read_bytes(), ref))
    return archive
