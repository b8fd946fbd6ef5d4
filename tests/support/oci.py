"""podman and a local OCI registry for the image tests: the settings scripts/build-image.sh writes,
the image it builds, Debian's docker-registry on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import yaml

from nchart.localcluster.processes import free_port, running
from tests.support.charts import ROOT
from tests.support.readiness import wait_until_answers

OCI_STATE = ROOT / "build" / "oci"
SERVING_CHART = ROOT / "charts" / "sd21-serving" / "Chart.yaml"


def app_version() -> str:
    return str(yaml.safe_load(SERVING_CHART.read_text(encoding="utf-8"))["appVersion"])


def built_image(target: str = "cpu") -> str:
    """The image `make image` built for this checkout's server version; a clear failure without it."""
    return _built(f"localhost/eks-neuron/sd21-serving:{app_version()}-{target}", "scripts/build-image.sh")


def built_exporter_image() -> str:
    """The pod usage exporter's image `make image` built, at the release version."""
    return _built(
        f"localhost/eks-neuron/neuron-pod-usage-exporter:{app_version()}", "scripts/build-image.sh pod-usage-exporter"
    )


def _built(image: str, how: str) -> str:
    if not (OCI_STATE / "containers.conf").is_file() or podman("image", "exists", image, check=False).returncode:
        raise AssertionError(f"{image} is not built: run `make image` ({how})")
    return image


def podman(*args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONTAINERS_CONF": str(OCI_STATE / "containers.conf")}
    result = subprocess.run(["podman", *args], capture_output=True, text=True, env=env, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


@contextlib.contextmanager
def local_registry(storage: Path) -> Iterator[str]:
    """Debian's docker-registry (distribution) on 127.0.0.1, storing under `storage`; yields host:port."""
    binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    port = free_port()
    config = storage / "config.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "version": 0.1,
                "log": {"level": "warn"},
                "storage": {"filesystem": {"rootdirectory": str(storage / "data")}, "delete": {"enabled": True}},
                "http": {"addr": f"127.0.0.1:{port}"},
            }
        ),
        encoding="utf-8",
    )
    address = f"127.0.0.1:{port}"
    with (
        (storage / "registry.log").open("ab") as log,
        running(
            "docker-registry",
            [binary, "serve", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        ) as (process, _),
    ):
        wait_until_answers(
            f"http://{address}/v2/",
            "the registry",
            timeout_s=60,
            why_dead=lambda: None if process.poll() is None else (storage / "registry.log").read_text()[-2000:],
        )
        yield address
