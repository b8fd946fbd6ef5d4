"""Rendering the umbrella chart through helm: one `helm template` process, values on stdin.

helm is started before its values are known (`HelmTemplate`): its own start-up, about half of a
render on a small machine, then overlaps nchart's imports and its layering of the values. That is safe
because helm reads its values before it loads the chart (helm v3.19 cmd/helm/install.go, runInstall:
MergeValues, then loader.Load): the charts' dependencies are rebuilt, where stale, before helm gets its
values, so it only ever loads current ones (tests/nchart/test_chartdeps.py renders an edited subchart
through this path).
"""

from __future__ import annotations

import functools
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..errors import ExitCode, NchartError, UsageError
from .names import DEFAULT_NAMESPACE, DEFAULT_RELEASE
from .project import Project

if TYPE_CHECKING:
    from .values import Values, ValuesSource


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


# Characters YAML does not allow in a document (YAML 1.2, 5.1 "Character Set") or reads as line breaks
# (YAML 1.1's NEL, LS, PS): helm reads its values as YAML, so these travel as escapes. JSON escapes C0
# itself; json.dumps' own escapes of the rest (ensure_ascii) would split characters beyond the BMP into
# surrogate pairs, which YAML refuses.
_NOT_YAML_PRINTABLE = re.compile(r"[\x7f-\x9f\u2028\u2029\ud800-\udfff\ufffe\uffff]")


def values_document(values: Values) -> str:
    """The values as helm reads them on stdin: JSON, which is YAML, with every character YAML allows."""
    import json

    text = json.dumps(values, ensure_ascii=False)
    return _NOT_YAML_PRINTABLE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def run_helm(helm: str, args: list[str], values: Values) -> str:
    """Runs one helm command, values as JSON on stdin; returns stdout.

    A plain subprocess rather than pyhelm3: pyhelm3's package import alone (its pydantic models)
    costs more than the whole `helm template` it would run (README, "Why not pyhelm3").
    """
    from .tools import run_tool  # not on `nchart render`'s path to starting helm (its dataclass import)

    result = run_tool([helm, *args], values_document(values))
    if result.returncode != 0:
        raise NchartError(clean_helm_stderr(result.stderr), ExitCode.TOOL_FAILED)
    return result.stdout


class HelmTemplate:
    """A `helm template` process waiting for its values on stdin; `finish` gives them and returns the
    manifests. Leaving the `with` block without finishing stops the process (by its PID)."""

    TIMEOUT_S = 300

    def __init__(
        self,
        project: Project,
        release: str = DEFAULT_RELEASE,
        namespace: str = DEFAULT_NAMESPACE,
        kube_version: str | None = None,
        api_versions: Iterable[str] = (),
    ) -> None:
        self.project = project
        helm = project.tool("helm")
        args = helm_template_args(project.umbrella, release, namespace, kube_version, api_versions)
        try:
            self._process: subprocess.Popen[str] | None = subprocess.Popen(
                [helm, *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
            )
        except OSError as error:
            raise NchartError(f"cannot run {helm}: {error.strerror}", ExitCode.TOOL_MISSING) from None

    def __enter__(self) -> HelmTemplate:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.communicate()
        self._process = None

    def finish(self, sources: list[ValuesSource]) -> str:
        """The manifests helm renders from the layered values; helm's refusal as the user's error where it is one."""
        from .values import merged

        if self._process is None:
            raise RuntimeError("HelmTemplate.finish called twice")
        values = values_document(merged(sources))
        from . import chartdeps  # after helm has started: hashing and its imports overlap helm's start-up

        chartdeps.ensure_built(self.project)  # before helm has its values, so before it loads the chart
        process, self._process = self._process, None
        try:
            stdout, stderr = process.communicate(values, timeout=self.TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise NchartError(f"helm template did not finish within {self.TIMEOUT_S}s", ExitCode.TOOL_FAILED) from None
        if process.returncode != 0:
            raise _explain_render_failure(self.project, sources, clean_helm_stderr(stderr))
        return stdout


def render(
    project: Project,
    sources: list[ValuesSource],
    release: str = DEFAULT_RELEASE,
    namespace: str = DEFAULT_NAMESPACE,
    kube_version: str | None = None,
    api_versions: Iterable[str] = (),
) -> str:
    """The umbrella chart rendered with the layered values, as helm prints it."""
    with HelmTemplate(project, release, namespace, kube_version, api_versions) as helm:
        return helm.finish(sources)


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
    """helm's output as the API server reads it (see _manifest_loader)."""
    import yaml

    return [doc for doc in yaml.load_all(text, Loader=_manifest_loader()) if doc]


@functools.cache
def _manifest_loader() -> Any:
    """PyYAML's safe loader, but for one difference from Kubernetes' YAML (sigs.k8s.io/yaml): a plain
    `=` is YAML 1.1's "value" type, which PyYAML resolves and cannot construct, while Kubernetes reads
    it as the string "=" (and helm's toYaml writes an annotation "=" bare)."""
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader: Any = type("ManifestLoader", (base,), {})
    loader.add_constructor("tag:yaml.org,2002:value", yaml.SafeLoader.construct_yaml_str)
    return loader


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
