"""Bearer tokens from a directory laid out as Kubernetes mounts a Secret (`..data` symlink swapped on update)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from serving.cli import cli
from tests.support.serving import metric_value, ready_app, ready_client

ROUTE = "/v1/images/generations"
PROMPT = {"prompt": "a red cube", "seed": 1, "steps": 2}


def mount_secret(directory: Path, tokens: dict[str, str], version: int) -> None:
    """Writes `tokens` as the kubelet updates a Secret volume: files in a new timestamped folder, then the
    `..data` symlink swapped to it atomically; each key is a symlink through `..data`."""
    directory.mkdir(exist_ok=True)
    folder = directory / f"..2026_11_28_{version:02d}"
    folder.mkdir()
    for name, token in tokens.items():
        (folder / name).write_text(token + "\n")
    (directory / "..data_tmp").symlink_to(folder.name)
    os.replace(directory / "..data_tmp", directory / "..data")
    for name in tokens:
        if not (directory / name).is_symlink():
            (directory / name).symlink_to(f"..data/{name}")


@pytest.fixture(scope="module")
def secret_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tokens") / "secret"
    mount_secret(directory, {"team-a": "alpha-token-1", "team-b": "beta-token-1"}, version=1)
    return directory


@pytest.fixture(scope="module")
def client(tiny_model_dir: Path, secret_dir: Path) -> Any:
    with ready_client(ready_app(tiny_model_dir, api_tokens_dir=secret_dir)) as test_client:
        yield test_client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_no_token_gets_401_with_the_api_error_and_the_bare_challenge(client: Any) -> None:
    response = client.post(ROUTE, json=PROMPT)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="eks-neuron"'
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "missing_api_key")


def test_a_wrong_token_gets_invalid_token(client: Any) -> None:
    for header in (bearer("alpha-token-2"), bearer("alpha-token-1x"), {"Authorization": "Basic YTpi"}):
        response = client.get("/v1/models", headers=header)
        assert response.status_code == 401, header
    assert 'error="invalid_token"' in client.get("/v1/models", headers=bearer("nope")).headers["www-authenticate"]


def test_each_token_works_and_is_counted_by_its_name(client: Any) -> None:
    before = metric_value(client.get("/metrics").text, "sd_authenticated_requests_total", {"token": "team-b"})
    response = client.post(ROUTE, json=PROMPT, headers={"authorization": "bearer beta-token-1"})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert client.get("/v1/models", headers=bearer("alpha-token-1")).status_code == 200
    text = client.get("/metrics").text
    assert metric_value(text, "sd_authenticated_requests_total", {"token": "team-b"}) == before + 1
    assert "beta-token-1" not in text and "alpha-token-1" not in text


def test_probes_and_metrics_need_no_token(client: Any) -> None:
    assert client.get("/health").status_code == 200
    assert client.get("/ready").status_code == 200
    text = client.get("/metrics").text
    assert metric_value(text, "sd_rejected_requests_total", {"reason": "unauthenticated"}) >= 1


def test_a_rotated_secret_takes_effect_without_a_restart(client: Any, secret_dir: Path) -> None:
    mount_secret(secret_dir, {"team-a": "alpha-token-2", "team-b": "beta-token-1"}, version=2)
    assert client.get("/v1/models", headers=bearer("alpha-token-2")).status_code == 200
    assert client.get("/v1/models", headers=bearer("alpha-token-1")).status_code == 401


def test_metrics_can_be_protected_too(tiny_model_dir: Path, tmp_path: Path) -> None:
    mount_secret(tmp_path / "secret", {"scraper": "s3cr3t"}, version=1)
    app = ready_app(tiny_model_dir, api_tokens_dir=tmp_path / "secret", metrics_require_token=True)
    with ready_client(app) as protected:
        assert protected.get("/metrics").status_code == 401
        assert protected.get("/metrics", headers=bearer("s3cr3t")).status_code == 200
        assert protected.get("/ready").status_code == 200


def test_a_tokens_dir_that_is_not_there_stops_the_server_with_its_name(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-secret"
    env = {"SD_API_TOKENS_DIR": str(missing), "SD_MODEL_DIR": str(tmp_path)}
    result = CliRunner().invoke(cli, ["serve"], env=env)
    assert result.exit_code == 2, result.output
    assert f"SD_API_TOKENS_DIR: {missing} is not a directory" in result.output
