"""The pod usage exporter's gRPC stubs, from the kubelet's PodResources protobuf vendored beside them
(pod-usage-exporter/src/neuron_pod_usage/podresources/v1/api.proto), with grpcio-tools' protoc."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ..core.project import Project
from ..errors import ExitCode, NchartError
from .files import Generated, update

SOURCE_ROOT = Path("pod-usage-exporter/src")
PROTO = Path("neuron_pod_usage/podresources/v1/api.proto")
STUBS = ("api_pb2.py", "api_pb2.pyi", "api_pb2_grpc.py")


def generate_podresources_stubs(project: Project, check: bool, result: Generated) -> None:
    source_root = project.root / SOURCE_ROOT
    if not (source_root / PROTO).is_file():
        raise NchartError(f"{SOURCE_ROOT / PROTO}: not found", ExitCode.USAGE)
    with tempfile.TemporaryDirectory(prefix="nchart-protoc-") as scratch:
        # protoc names the stubs' imports after the proto's path under its include root.
        (Path(scratch) / PROTO).parent.mkdir(parents=True)
        shutil.copy(source_root / PROTO, Path(scratch) / PROTO)
        protoc = subprocess.run(
            [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                f"-I{scratch}",
                f"--python_out={scratch}",
                f"--pyi_out={scratch}",
                f"--grpc_python_out={scratch}",
                str(Path(scratch) / PROTO),
            ],
            capture_output=True,
            text=True,
        )
        if protoc.returncode != 0:
            message = protoc.stderr.strip() or protoc.stdout.strip()
            if "No module named grpc_tools" in message:
                raise NchartError("grpcio-tools is not installed: pip install -e '.[test]'", ExitCode.TOOL_MISSING)
            raise NchartError(f"protoc failed on {SOURCE_ROOT / PROTO}: {message}", ExitCode.TOOL_FAILED)
        for stub in STUBS:
            text = (Path(scratch) / PROTO.parent / stub).read_text(encoding="utf-8")
            update(project, source_root / PROTO.parent / stub, text, check, result)
