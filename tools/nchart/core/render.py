"""Rendering the umbrella chart through helm: one `helm template` process, values on stdin."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from ..errors import ExitCode, NchartError, UsageError
from . import chartdeps
from .project import Project
from .tools import run_tool
from .values import Values, ValuesSource, merged

DEFAULT_RELEASE = "eks-neuron"
DEFAULT_NAMESPACE = "kube-system"

_EXECUTION_ERROR = re.compile(r"execution error at \((?P<where>[^)]*)\): (?P<message>.*)", re.DOTALL)


def clean_helm_stderr(stderr: str) -> str:
    return stderr.replace("\nUse --debug flag to render out invalid YAML", "").strip()


def helm_template_args(
    chart: Path, release: str, namespace: str, kube_version: str | None = None, api_versions: Iterable[str] = ()
) -> list[str]:
    args = ["template", release, str(chart), "--namespace", namespace, "--values", "-"]
    if kube_version:
        args += ["--kube-version", kube_version]
    for api_version in api_versions:
        args += ["--api-versions", api_version]
    return args


def run_helm(helm: str, args: list[str], values: Values) -> str:
    """Runs one helm command, values as JSON on stdin; returns stdout.

    A plain subprocess rather than pyhelm3: pyhelm3's package import alone (its pydantic models)
    costs more than the whole `helm template` it would run (README, "Why not pyhelm3").
    """
    result = run_tool([helm, *args], json.dumps(values))
    if result.returncode != 0:
        raise NchartError(clean_helm_stderr(result.stderr), ExitCode.TOOL_FAILED)
    return result.stdout


def render(
    project: Project,
    sources: list[ValuesSource],
    release: str = DEFAULT_RELEASE,
    namespace: str = DEFAULT_NAMESPACE,
    kube_version: str | None = None,
    api_versions: Iterable[str] = (),
) -> str:
    """The umbrella chart rendered with the layered values, as helm prints it."""
    values = merged(sources)
    chartdeps.ensure_built(project)
    args = helm_template_args(project.umbrella, release, namespace, kube_version, api_versions)
    try:
        return run_helm(project.tool("helm"), args, values)
    except NchartError as error:
        if error.exit_code != ExitCode.TOOL_FAILED:
            raise
        raise _explain_render_failure(project, sources, error.message) from None


def _explain_render_failure(project: Project, sources: list[ValuesSource], helm_message: str) -> NchartError:
    """Turns helm's failure into the user's mistake where it is one: which file, which key."""
    if "don't meet the specifications of the schema" in helm_message:
        from .schemacheck import check_sources  # jsonschema: only a failed render pays for it

        problems = check_sources(project, sources)
        if problems:
            # One line per problem, each naming its file and key.
            return UsageError("\n".join(problems))
        return UsageError(helm_message)
    match = _EXECUTION_ERROR.search(helm_message)
    if match:
        return UsageError(f"{match['message'].strip()} (raised by {match['where']})")
    return NchartError(f"helm template failed: {'; '.join(helm_message.splitlines())}", ExitCode.TOOL_FAILED)


def parse_manifests(text: str) -> list[dict[str, Any]]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return [doc for doc in yaml.load_all(text, Loader=loader) if doc]


_SOURCE = re.compile(r"^# Source: (?P<path>.+)$", re.MULTILINE)


def write_output_dir(text: str, out_dir: Path) -> list[Path]:
    """One file per template, at its chart path, as `helm template --output-dir` lays them out."""
    written: dict[Path, list[str]] = {}
    for document in text.split("\n---\n"):
        match = _SOURCE.search(document)
        if not match:
            continue
        relative = Path(match["path"])
        if relative.is_absolute() or ".." in relative.parts:
            raise NchartError(f"helm printed an unexpected source path {relative}")
        written.setdefault(out_dir / relative, []).append(document.strip("-\n") + "\n")
    for path, documents in written.items():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("---\n" + "---\n".join(documents), encoding="utf-8")
        except OSError as error:
            raise UsageError(f"--output-dir {out_dir}: cannot write {path}: {error.strerror}") from None
    return sorted(written)
