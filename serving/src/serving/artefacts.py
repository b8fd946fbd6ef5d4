"""The compiled model as a tarball in S3: packing it, uploading it, and fetching it into the directory
the server loads (the chart's initContainer and its compile Job run these, in the server's image).

The tarball's sha256 sits beside it as `<key>.sha256` ("<hex>  <name>"), uploaded last: a reader that
finds the digest finds the whole tarball. A fetch verifies the digest while it downloads, unpacks into
a staging directory and moves the files into place only when the archive is whole and holds a
pipeline, so a failed fetch never leaves half a model. The model directory's `.complete` holds the
digest it was unpacked from: a node-local cache that already holds it is reused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

S3_URI = re.compile(r"^s3://(?P<bucket>[^/]+)/(?P<key>.+)$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
COMPLETE_MARKER = ".complete"
CHUNK = 1 << 20

Say = Callable[[str], None]


class FetchError(RuntimeError):
    """The model could not be fetched; the message says what to change."""


class UnsafeArchive(ValueError):
    """A tarball member that would land outside the directory, or is not a plain file or directory."""


def extract_data(archive: tarfile.TarFile, destination: Path) -> None:
    """Extracts plain files and directories under destination, refusing anything else: tarfile's
    "data" filter where Python has it (3.11.4 and later), the same refusals by hand where it does not
    (Debian bookworm's Python 3.11.2, the cpu and cuda images' base)."""
    if hasattr(tarfile, "data_filter"):
        try:
            archive.extractall(destination, filter="data")
        except tarfile.FilterError as error:
            raise UnsafeArchive(str(error)) from None
        return
    root = destination.resolve()
    for member in archive.getmembers():
        target = (destination / member.name).resolve()
        if target != root and root not in target.parents:
            raise UnsafeArchive(f"{member.name!r} would be extracted outside {destination}")
        if not (member.isfile() or member.isdir()):
            raise UnsafeArchive(f"{member.name!r} is not a plain file or directory")
        archive.extract(member, destination, set_attrs=False)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pack(model_dir: Path, tarball: Path) -> str:
    """Writes tarball (gzip, paths relative to model_dir) and tarball.sha256; returns the digest."""
    if not (model_dir / "model_index.json").is_file():
        raise FileNotFoundError(f"{model_dir}: no model_index.json; not a pipeline directory")
    tarball.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball, "w:gz") as archive:
        for path in sorted(model_dir.rglob("*")):
            if path.is_file() and path.name != COMPLETE_MARKER:
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
        extract_data(archive, out_dir)


# --- S3 ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class S3Object:
    bucket: str
    key: str

    @classmethod
    def parse(cls, uri: str, what: str = "the model URI (--uri, or MODEL_S3_URI: the chart's model.s3Uri)") -> S3Object:
        match = S3_URI.match(uri or "")
        if match is None:
            raise FetchError(f"{what} must look like s3://bucket/key, got {uri!r}")
        return cls(match["bucket"], match["key"])

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def sibling(self, suffix: str) -> S3Object:
        return S3Object(self.bucket, self.key + suffix)


def s3_client() -> Any:
    """boto3's S3 client with the pod's credentials (IRSA or EKS Pod Identity) and, where set,
    AWS_ENDPOINT_URL (an S3-compatible store)."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", config=Config(retries={"max_attempts": 5, "mode": "standard"}))


def _explain(error: Exception, target: S3Object, action: str) -> FetchError:
    """One line for what S3 (or the way to it) answered."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("NoSuchKey", "404", "NotFound") or status == 404:
            return FetchError(f"{target.uri} does not exist (missing object); upload it, or fix the URI")
        if code == "NoSuchBucket":
            return FetchError(f"{target.uri}: bucket {target.bucket} does not exist")
        if code in ("AccessDenied", "403", "Forbidden") or status == 403:
            return FetchError(
                f"{target.uri}: access denied for {action} (no access for this pod's IAM role: give its "
                f"ServiceAccount's role s3:{'PutObject' if action == 'upload' else 'GetObject'} on it)"
            )
        return FetchError(f"{target.uri}: S3 answered {code or status} to the {action}: {error}")
    if isinstance(error, NoCredentialsError):
        return FetchError(
            f"{target.uri}: no AWS credentials in this pod; associate an IAM role with its ServiceAccount "
            "(serviceAccount.iamRoleArn for IRSA, or an EKS Pod Identity association)"
        )
    if isinstance(error, BotoCoreError):
        return FetchError(f"{target.uri}: the {action} failed: {error}")
    return FetchError(f"{target.uri}: the {action} failed: {error}")


def _read_digest(client: Any, source: S3Object) -> str:
    digest_object = source.sibling(".sha256")
    try:
        body = client.get_object(Bucket=digest_object.bucket, Key=digest_object.key)["Body"].read()
    except Exception as error:
        raise FetchError(
            f"cannot read {digest_object.uri}: {_explain(error, digest_object, 'download')}; upload it beside "
            "the tarball (eks-neuron-serve pack writes it) or give the digest (model.sha256)"
        ) from None
    fields = body.decode(errors="replace").split()
    return fields[0] if fields else ""


def _download(client: Any, source: S3Object, destination: Path) -> str:
    """Streams the object to destination; returns its sha256, computed on the way."""
    digest = hashlib.sha256()
    try:
        response = client.get_object(Bucket=source.bucket, Key=source.key)
        expected_size = int(response.get("ContentLength", -1))
        size = 0
        with destination.open("wb") as out:
            for chunk in response["Body"].iter_chunks(CHUNK):
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
    except FetchError:
        raise
    except Exception as error:
        raise _explain(error, source, "download") from None
    if expected_size >= 0 and size != expected_size:
        raise FetchError(f"{source.uri}: the download ended after {size} of {expected_size} bytes")
    return digest.hexdigest()


def _unpack_whole(tarball: Path, staging: Path, source: S3Object) -> None:
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            extract_data(archive, staging)
    except UnsafeArchive as error:
        raise FetchError(f"{source.uri}: refused, {error}") from None
    except (tarfile.TarError, EOFError, OSError, ValueError) as error:
        raise FetchError(
            f"{source.uri} is not a whole gzip tarball ({type(error).__name__}: {error}); pack and upload it again"
        ) from None
    if not (staging / "model_index.json").is_file():
        raise FetchError(f"{source.uri} does not contain model_index.json at its top level; not a pipeline tarball")


def fetch_model(
    uri: str, model_dir: Path, expected_sha256: str = "", work_dir: Path | None = None, say: Say = print
) -> str:
    """Downloads the tarball at uri, verifies it and unpacks it into model_dir; returns its digest."""
    source = S3Object.parse(uri)
    work = work_dir or model_dir / ".download"
    client = s3_client()
    expected = (expected_sha256 or _read_digest(client, source)).lower()
    if not SHA256.match(expected):
        raise FetchError(f"the expected sha256 {expected!r} is not 64 hex digits")
    marker = model_dir / COMPLETE_MARKER
    if marker.is_file() and marker.read_text(encoding="utf-8").strip() == expected:
        say(f"fetch-model: {model_dir} already holds {expected}; nothing to do")
        return expected
    say(f"fetch-model: downloading {source.uri}")
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        work.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FetchError(f"cannot create {error.filename}: {error.strerror}") from None
    tarball = work / "model.tar.gz"
    staging = work / "unpacked"
    try:
        actual = _download(client, source, tarball)
        if actual != expected:
            raise FetchError(f"sha256 of {source.uri} is {actual}, expected {expected}")
        _unpack_whole(tarball, staging, source)
        _replace_contents(model_dir, staging, keep={work})
        marker.write_text(expected + "\n", encoding="utf-8")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    say(f"fetch-model: unpacked {source.uri} ({expected}) into {model_dir}")
    return expected


def _replace_contents(model_dir: Path, staging: Path, keep: set[Path]) -> None:
    """model_dir's entries become staging's (model_dir itself may be a mount point: it stays)."""
    keep = {path.resolve() for path in keep}
    for entry in model_dir.iterdir():
        if entry.resolve() in keep or any(entry.resolve() in path.parents for path in keep):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    for entry in staging.iterdir():
        shutil.move(str(entry), model_dir / entry.name)


def upload_model(tarball: Path, uri: str, say: Say = print) -> str:
    """Uploads the tarball, then its digest beside it (last: readers trust a tarball its digest names)."""
    target = S3Object.parse(uri)
    if not tarball.is_file():
        raise FetchError(f"{tarball}: no such file to upload")
    sidecar = Path(f"{tarball}.sha256")
    digest = sha256_of(tarball)
    if sidecar.is_file() and sidecar.read_text(encoding="utf-8").split()[:1] != [digest]:
        raise FetchError(f"{sidecar} does not match {tarball}; pack it again")
    client = s3_client()
    try:
        client.upload_file(str(tarball), target.bucket, target.key)
        size = int(client.head_object(Bucket=target.bucket, Key=target.key)["ContentLength"])
        if size != tarball.stat().st_size:
            raise FetchError(f"{target.uri}: {size} bytes arrived of {tarball.stat().st_size}")
        digest_object = target.sibling(".sha256")
        body = f"{digest}  {Path(target.key).name}\n".encode()
        client.put_object(Bucket=digest_object.bucket, Key=digest_object.key, Body=body)
    except FetchError:
        raise
    except Exception as error:
        raise _explain(error, target, "upload") from None
    say(f"upload-model: uploaded {target.uri} (sha256 {digest}) and {target.uri}.sha256")
    return digest
