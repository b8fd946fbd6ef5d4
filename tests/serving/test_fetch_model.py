"""Fetching and uploading the model (`eks-neuron-serve fetch-model` / `upload-model`, what the chart's
initContainer and compile Job run) against a local S3-compatible server (moto, on 127.0.0.1): as a
process on this machine, and in the server image `make image` built, as the chart runs it (its user,
read-only root, /tmp a scratch volume). Each failure a pod can meet ends with one line that says what
to change, exit 1, and no half-unpacked model."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.oci import built_image, podman

pytestmark = pytest.mark.slow
BUCKET = "models"
RUNNERS = ["process", "image"]


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )
    client.create_bucket(Bucket=BUCKET)
    client.endpoint = endpoint  # type: ignore[attr-defined]
    yield client
    server.stop()


def model_tarball(files: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in (
            files or {"model_index.json": b'{"_class_name": "x"}', "neuron/manifest.json": b"{}"}
        ).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def put_model(s3: Any, key: str, data: bytes, digest: str | None = None) -> str:
    digest = digest or hashlib.sha256(data).hexdigest()
    s3.put_object(Bucket=BUCKET, Key=key, Body=data)
    s3.put_object(Bucket=BUCKET, Key=f"{key}.sha256", Body=f"{digest}  model.tar.gz\n".encode())
    return digest


class Runner:
    """Runs an eks-neuron-serve command here, or in the cpu image with the chart's container settings."""

    def __init__(self, kind: str, s3: Any, tmp_path: Path) -> None:
        self.kind, self.s3, self.tmp_path = kind, s3, tmp_path
        self.model_dir = tmp_path / "model"
        self.model_dir.mkdir()
        self.model_dir.chmod(0o777)  # the container's user writes it, as an emptyDir lets it

    def run(
        self, *args: str, credentials: tuple[str, str] = ("test", "test"), **env: str
    ) -> subprocess.CompletedProcess[str]:
        settings = {
            "AWS_ENDPOINT_URL": self.s3.endpoint,
            "AWS_ACCESS_KEY_ID": credentials[0],
            "AWS_SECRET_ACCESS_KEY": credentials[1],
            "AWS_DEFAULT_REGION": "us-east-1",
            **env,
        }
        if self.kind == "process":
            settings["MODEL_DIR"] = settings.get("MODEL_DIR", str(self.model_dir))
            return subprocess.run(
                [sys.executable, "-m", "serving", *args],
                env={**os.environ, "HOME": str(self.tmp_path), **settings},
                capture_output=True, text=True, timeout=300,
            )  # fmt: skip
        settings["MODEL_DIR"] = "/model"
        options = ["--rm", "--network", "host", "--read-only", "--user", "65532:65532", "--cap-drop", "ALL"]
        options += ["--security-opt", "no-new-privileges", "--tmpfs", "/tmp:rw,size=256m,mode=1777"]
        options += ["--volume", f"{self.model_dir}:/model", "--volume", f"{self.tmp_path}:/upload:ro"]
        for name, value in {**settings, "WORK_DIR": "/tmp/download"}.items():
            options += ["--env", f"{name}={value}"]
        result = podman("run", *options, built_image("cpu"), *args, check=False, timeout=300)
        return subprocess.CompletedProcess(result.args, result.returncode, result.stdout, result.stderr)

    def path(self, local: Path) -> str:
        """A file of tmp_path as the command sees it."""
        return str(local) if self.kind == "process" else f"/upload/{local.relative_to(self.tmp_path)}"


@pytest.fixture(params=RUNNERS)
def runner(request: pytest.FixtureRequest, s3: Any, tmp_path: Path) -> Runner:
    return Runner(request.param, s3, tmp_path)


def fails_cleanly(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_downloads_verifies_and_unpacks_with_the_sha256_object(runner: Runner, s3: Any) -> None:
    digest = put_model(s3, f"{runner.kind}/ok/model.tar.gz", model_tarball())
    result = runner.run("fetch-model", MODEL_S3_URI=f"s3://{BUCKET}/{runner.kind}/ok/model.tar.gz")
    assert result.returncode == 0, result.stderr
    assert f"unpacked s3://{BUCKET}/{runner.kind}/ok/model.tar.gz ({digest})" in result.stdout
    assert (runner.model_dir / "model_index.json").read_text().startswith('{"_class_name"')
    assert (runner.model_dir / "neuron/manifest.json").is_file()
    assert (runner.model_dir / ".complete").read_text().strip() == digest
    assert sorted(p.name for p in runner.model_dir.iterdir()) == [".complete", "model_index.json", "neuron"]
    # A node-local cache that already holds this digest is reused without downloading.
    again = runner.run("fetch-model", MODEL_S3_URI=f"s3://{BUCKET}/{runner.kind}/ok/model.tar.gz", MODEL_SHA256=digest)
    assert again.returncode == 0 and "nothing to do" in again.stdout


def test_a_missing_object_says_so(runner: Runner) -> None:
    result = runner.run("fetch-model", MODEL_S3_URI=f"s3://{BUCKET}/nope/model.tar.gz", MODEL_SHA256="a" * 64)
    fails_cleanly(result, f"s3://{BUCKET}/nope/model.tar.gz does not exist (missing object); upload it, or fix the URI")
    without_digest = runner.run("fetch-model", MODEL_S3_URI=f"s3://{BUCKET}/nope/model.tar.gz")
    fails_cleanly(without_digest, f"cannot read s3://{BUCKET}/nope/model.tar.gz.sha256")
    assert not list(runner.model_dir.iterdir())


def test_a_checksum_mismatch_leaves_the_model_it_had(runner: Runner, s3: Any) -> None:
    (runner.model_dir / "model_index.json").write_text("the model from before")
    put_model(s3, f"{runner.kind}/bad/model.tar.gz", model_tarball(), digest="0" * 64)
    result = runner.run("fetch-model", MODEL_S3_URI=f"s3://{BUCKET}/{runner.kind}/bad/model.tar.gz")
    fails_cleanly(result, f"sha256 of s3://{BUCKET}/{runner.kind}/bad/model.tar.gz is ")
    assert f"expected {'0' * 64}" in result.stderr
    assert (runner.model_dir / "model_index.json").read_text() == "the model from before"
    assert not (runner.model_dir / ".complete").exists() and not (runner.model_dir / ".download").exists()


def test_a_truncated_tarball_is_refused_whole(runner: Runner, s3: Any) -> None:
    """Truncated before it was uploaded, so its digest matches: the archive itself is broken."""
    whole = model_tarball({"model_index.json": b"{}", "unet/weights.bin": os.urandom(200_000)})
    put_model(s3, f"{runner.kind}/cut/model.tar.gz", whole[: len(whole) // 2])
    result = runner.run("fetch-model", MODEL_S3_URI=f"s3://{BUCKET}/{runner.kind}/cut/model.tar.gz")
    fails_cleanly(result, f"s3://{BUCKET}/{runner.kind}/cut/model.tar.gz is not a whole gzip tarball")
    assert not list(runner.model_dir.iterdir())


def test_a_tarball_without_a_pipeline_is_refused(runner: Runner, s3: Any) -> None:
    put_model(s3, f"{runner.kind}/empty/model.tar.gz", model_tarball({"README": b"no model here"}))
    result = runner.run("fetch-model", MODEL_S3_URI=f"s3://{BUCKET}/{runner.kind}/empty/model.tar.gz")
    fails_cleanly(result, "does not contain model_index.json at its top level")
    assert not list(runner.model_dir.iterdir())


def test_a_member_that_would_leave_the_model_directory_is_refused(runner: Runner, s3: Any) -> None:
    put_model(s3, f"{runner.kind}/evil/model.tar.gz", model_tarball({"model_index.json": b"{}", "../escape": b"x"}))
    result = runner.run("fetch-model", MODEL_S3_URI=f"s3://{BUCKET}/{runner.kind}/evil/model.tar.gz")
    fails_cleanly(result, f"s3://{BUCKET}/{runner.kind}/evil/model.tar.gz: refused, ")
    assert "outside" in result.stderr
    assert not list(runner.model_dir.iterdir()) and not (runner.model_dir.parent / "escape").exists()


def test_no_permission_names_the_role_to_fix(runner: Runner, s3: Any) -> None:
    """A real access check: moto's IAM, on for this test, with a user that may list but not read."""
    import boto3
    from moto import settings

    put_model(s3, f"{runner.kind}/locked/model.tar.gz", model_tarball())
    iam = boto3.client(
        "iam", endpoint_url=s3.endpoint, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )
    user = f"lister-{runner.kind}"
    iam.create_user(UserName=user)
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}]}
    iam.put_user_policy(UserName=user, PolicyName="list-only", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    try:
        result = runner.run(
            "fetch-model",
            credentials=(key["AccessKeyId"], key["SecretAccessKey"]),
            MODEL_S3_URI=f"s3://{BUCKET}/{runner.kind}/locked/model.tar.gz",
            MODEL_SHA256="a" * 64,
        )
    finally:
        settings.INITIAL_NO_AUTH_ACTION_COUNT = float("inf")
    fails_cleanly(result, "access denied for download (no access for this pod's IAM role")
    assert "s3:GetObject" in result.stderr


@pytest.mark.parametrize(
    "uri,message",
    [
        ("", "the model URI (--uri, or MODEL_S3_URI: the chart's model.s3Uri) must look like s3://bucket/key, got ''"),
        ("https://x/y", "must look like s3://bucket/key, got 'https://x/y'"),
    ],
)
def test_a_bad_uri_fails_before_any_download(s3: Any, tmp_path: Path, uri: str, message: str) -> None:
    result = Runner("process", s3, tmp_path).run("fetch-model", MODEL_S3_URI=uri)
    fails_cleanly(result, message)
    assert "Traceback" not in result.stderr


def test_upload_then_fetch_round_trips_and_the_digest_goes_beside_it(runner: Runner, s3: Any, tmp_path: Path) -> None:
    from serving.artefacts import pack

    source = tmp_path / "compiled"
    (source / "neuron").mkdir(parents=True)
    (source / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    (source / "neuron" / "unet.pt").write_bytes(os.urandom(4096))
    tarball = tmp_path / "out" / "model.tar.gz"
    digest = pack(source, tarball)
    for path in [tmp_path, *tmp_path.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o644)  # the container's user reads it
    uri = f"s3://{BUCKET}/{runner.kind}/compiled/model.tar.gz"
    uploaded = runner.run("upload-model", "--file", runner.path(tarball), MODEL_S3_URI=uri)
    assert uploaded.returncode == 0, uploaded.stderr
    assert f"uploaded {uri} (sha256 {digest})" in uploaded.stdout
    sidecar = s3.get_object(Bucket=BUCKET, Key=f"{runner.kind}/compiled/model.tar.gz.sha256")["Body"].read().decode()
    assert sidecar == f"{digest}  model.tar.gz\n"
    fetched = runner.run("fetch-model", MODEL_S3_URI=uri)
    assert fetched.returncode == 0, fetched.stderr
    assert (runner.model_dir / "neuron" / "unet.pt").read_bytes() == (source / "neuron" / "unet.pt").read_bytes()


def test_upload_refuses_a_tarball_its_digest_does_not_match(s3: Any, tmp_path: Path) -> None:
    tarball = tmp_path / "model.tar.gz"
    tarball.write_bytes(model_tarball())
    (tmp_path / "model.tar.gz.sha256").write_text("0" * 64 + "  model.tar.gz\n")
    result = Runner("process", s3, tmp_path).run(
        "upload-model", "--file", str(tarball), MODEL_S3_URI=f"s3://{BUCKET}/x.tar.gz"
    )
    fails_cleanly(result, "model.tar.gz.sha256 does not match")
