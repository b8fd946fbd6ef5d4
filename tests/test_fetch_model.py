"""The chart's fetch-model.sh, run by sh with the real AWS CLI against a local S3 server (moto)."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT

SCRIPT = ROOT / "charts/sd21-serving/files/fetch-model.sh"
BUCKET = "models"
pytestmark = pytest.mark.slow


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


def model_tarball() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in (
            ("model_index.json", b'{"_class_name": "StableDiffusionPipeline"}'),
            ("neuron/manifest.json", b"{}"),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def run_script(s3: Any, tmp_path: Path, uri: str, sha256: str = "") -> subprocess.CompletedProcess[str]:
    aws_dir = Path(sys.executable).parent  # the AWS CLI installed beside this interpreter
    env = {
        "PATH": f"{aws_dir}:{os.environ['PATH']}",
        "AWS_ENDPOINT_URL": s3.endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "HOME": str(tmp_path),
        "MODEL_S3_URI": uri,
        "MODEL_SHA256": sha256,
        "MODEL_DIR": str(tmp_path / "model"),
    }
    return subprocess.run(
        [shutil.which("sh") or "/bin/sh", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120
    )


def test_downloads_verifies_and_unpacks_with_the_sha256_object(s3: Any, tmp_path: Path) -> None:
    data = model_tarball()
    digest = hashlib.sha256(data).hexdigest()
    s3.put_object(Bucket=BUCKET, Key="sd21/model.tar.gz", Body=data)
    s3.put_object(Bucket=BUCKET, Key="sd21/model.tar.gz.sha256", Body=f"{digest}  model.tar.gz\n".encode())
    result = run_script(s3, tmp_path, f"s3://{BUCKET}/sd21/model.tar.gz")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "model/model_index.json").read_text().startswith('{"_class_name"')
    assert (tmp_path / "model/neuron/manifest.json").is_file()
    assert (tmp_path / "model/.complete").read_text().strip() == digest
    assert not (tmp_path / "model/.download").exists()
    # A cache that already holds this digest is reused without downloading.
    again = run_script(s3, tmp_path, f"s3://{BUCKET}/sd21/model.tar.gz", digest)
    assert again.returncode == 0 and "nothing to do" in again.stdout


def test_missing_object_fails_clearly(s3: Any, tmp_path: Path) -> None:
    result = run_script(s3, tmp_path, f"s3://{BUCKET}/nope/model.tar.gz", "a" * 64)
    assert result.returncode == 1
    assert "fetch-model: cannot download s3://models/nope/model.tar.gz (missing object or no access" in result.stderr
    missing_digest = run_script(s3, tmp_path, f"s3://{BUCKET}/nope/model.tar.gz")
    assert missing_digest.returncode == 1
    assert "cannot read s3://models/nope/model.tar.gz.sha256" in missing_digest.stderr


def test_checksum_mismatch_fails_and_leaves_no_model(s3: Any, tmp_path: Path) -> None:
    s3.put_object(Bucket=BUCKET, Key="bad/model.tar.gz", Body=model_tarball())
    result = run_script(s3, tmp_path, f"s3://{BUCKET}/bad/model.tar.gz", "0" * 64)
    assert result.returncode == 1
    assert "sha256 of s3://models/bad/model.tar.gz is" in result.stderr and "expected 0000" in result.stderr
    assert not (tmp_path / "model/model_index.json").exists()


@pytest.mark.parametrize(
    "uri,message", [("", "MODEL_S3_URI is empty"), ("https://x/y", "must look like s3://bucket/key")]
)
def test_bad_uri_fails_before_any_download(s3: Any, tmp_path: Path, uri: str, message: str) -> None:
    result = run_script(s3, tmp_path, uri)
    assert result.returncode == 1 and message in result.stderr
