"""Packing a compiled model directory into the tarball the chart's initContainer fetches from S3."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pack(model_dir: Path, tarball: Path) -> str:
    """Writes tarball (gzip, paths relative to model_dir) and tarball.sha256; returns the digest."""
    if not (model_dir / "model_index.json").is_file():
        raise FileNotFoundError(f"{model_dir}: no model_index.json; not a pipeline directory")
    tarball.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball, "w:gz") as archive:
        for path in sorted(model_dir.rglob("*")):
            if path.is_file():
                archive.add(path, arcname=str(path.relative_to(model_dir)))
    digest = sha256_of(tarball)
    Path(f"{tarball}.sha256").write_text(f"{digest}  {tarball.name}\n", encoding="utf-8")
    return digest


def unpack(tarball: Path, out_dir: Path, expected_sha256: str | None = None) -> None:
    """Verifies the digest (when given) and extracts; refuses members that would leave out_dir."""
    if expected_sha256 is not None:
        actual = sha256_of(tarball)
        if actual != expected_sha256.lower():
            raise ValueError(f"{tarball}: sha256 {actual} does not match the expected {expected_sha256}")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball, "r:gz") as archive:
        archive.extractall(out_dir, filter="data")
