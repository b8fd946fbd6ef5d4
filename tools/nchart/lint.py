"""`nchart lint`: chart metadata, YAML style, helm lint, values schemas, docs and rendered manifests."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from . import chartdeps
from .catalog import primary_instances, resolve_instance
from .errors import NchartError
from .project import Project
from .render import clean_helm_stderr, helm_template_args, render, run_helm
from .schemacheck import check_sources
from .tools import run_tool
from .values import ValuesSource, load_values_file, value_sources

Progress = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Failure:
    check: str
    where: str  # chart, or chart/env/instance for renders
    file: str
    message: str

    def line(self) -> str:
        return f"FAIL [{self.check}] {self.where}: {self.file}: {self.message}"


@dataclasses.dataclass
class LintReport:
    passed: dict[str, int] = dataclasses.field(default_factory=dict)
    failures: list[Failure] = dataclasses.field(default_factory=list)

    def ran(self, check: str, count: int = 1) -> None:
        self.passed[check] = self.passed.get(check, 0) + count

    def fail(self, check: str, where: str, file: str, message: str) -> None:
        self.failures.append(Failure(check, where, file, message))

    def lines(self) -> list[str]:
        out = [failure.line() for failure in self.failures]
        summary = ", ".join(f"{check}: {count}" for check, count in self.passed.items())
        verdict = f"{len(self.failures)} failure(s)" if self.failures else "all checks passed"
        out.append(f"nchart lint: {verdict} ({summary})")
        return out


def _relative(project: Project, path: Path) -> str:
    try:
        return str(path.relative_to(project.root))
    except ValueError:
        return str(path)


def ci_scenarios(chart: Path) -> list[Path]:
    return sorted((chart / "ci").glob("*-values.yaml"))


def _yaml_files(chart: Path) -> list[Path]:
    return [chart / "Chart.yaml", chart / "values.yaml", *sorted((chart / "ci").glob("*.yaml"))]


def check_chart_metadata(project: Project, chart: Path, report: LintReport) -> None:
    """chart-testing's Chart.yaml schema check (yamale)."""
    import yamale

    schema = yamale.make_schema(str(project.ci_dir / "chart_schema.yaml"))
    try:
        yamale.validate(schema, yamale.make_data(str(chart / "Chart.yaml")))
    except yamale.YamaleError as error:
        for result in error.results:
            for message in result.errors:
                report.fail("chart-schema", chart.name, _relative(project, chart / "Chart.yaml"), message)
    report.ran("chart-schema")


def check_yaml_style(project: Project, files: Iterable[Path], where: str, report: LintReport) -> None:
    """chart-testing's yamllint rules."""
    from yamllint import linter
    from yamllint.config import YamlLintConfig

    config = YamlLintConfig(file=str(project.ci_dir / "lintconf.yaml"))
    for path in files:
        for problem in linter.run(path.read_text(encoding="utf-8"), config, str(path)):
            if problem.level == "error":
                report.fail(
                    "yamllint",
                    where,
                    f"{_relative(project, path)}:{problem.line}:{problem.column}",
                    f"{problem.desc} ({problem.rule})",
                )
        report.ran("yamllint")


def check_helm_lint(project: Project, chart: Path, values_files: Iterable[Path | None], report: LintReport) -> None:
    helm = project.tool("helm")
    for values_file in values_files:
        args = [helm, "lint", "--strict", str(chart)]
        label = "defaults"
        if values_file is not None:
            args += ["--values", str(values_file)]
            label = _relative(project, values_file)
        result = run_tool(args)
        if result.returncode != 0:
            messages = [
                line.strip()
                for line in (result.stdout + "\n" + clean_helm_stderr(result.stderr)).splitlines()
                if "[ERROR]" in line or "[WARNING]" in line or line.startswith("Error")
            ]
            report.fail("helm-lint", chart.name, label, "; ".join(messages) or "helm lint failed")
        report.ran("helm-lint")


def check_values_schemas(project: Project, files: Iterable[Path], report: LintReport) -> None:
    """Every values file of the umbrella, checked against the umbrella and subchart schemas."""
    for path in files:
        origin = _relative(project, path)
        try:
            source = ValuesSource(origin, load_values_file(path))
        except NchartError as error:
            report.fail("values-schema", "eks-neuron", origin, error.message)
            continue
        for problem in check_sources(project, [source]):
            report.fail("values-schema", "eks-neuron", origin, problem.removeprefix(f"{origin}: "))
        report.ran("values-schema")


def check_generated(project: Project, report: LintReport) -> None:
    """Every generated file (instance lists, values schemas, READMEs, dashboards) is what its source gives."""
    from .generate import generate

    try:
        stale = generate(project, check=True).stale
    except NchartError as error:
        report.fail("generated", "charts", "-", error.message)
        return
    for path in stale:
        parts = Path(path).parts
        where = parts[1] if parts[0] == "charts" and len(parts) > 2 else "project"
        report.fail("generated", where, path, "differs from what its source generates; run `make generate`")
    report.ran("generated")


def prepare_kubernetes_schemas(project: Project, kube_version: str) -> Path:
    """kubeconform-readable copies of the Kubernetes schemas kubernetes-validate ships.

    Its files carry `$id`s under https://kubernetes.io/api/ and refer to `/api/_definitions.json`,
    which kubeconform would fetch from the network; the copies drop the ids and refer to the
    definitions file beside them. Built once per Kubernetes version and kubernetes-validate release.
    """
    from importlib.metadata import version

    import kubernetes_validate

    major_minor = ".".join(kube_version.lstrip("v").split(".")[:2])
    name = f"v{major_minor}.0-local-strict"
    source = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / name
    if not source.is_dir():
        available = sorted(p.name.removesuffix("-local-strict") for p in source.parent.glob("*-local-strict"))
        raise NchartError(f"no Kubernetes schemas for {kube_version}; available: {', '.join(available)}")
    target_root = project.root / "build" / "kubeconform-schemas"
    target = target_root / name
    stamp = target / ".source"
    wanted = f"kubernetes-validate {version('kubernetes-validate')}"
    if stamp.is_file() and stamp.read_text() == wanted:
        return target_root
    target.mkdir(parents=True, exist_ok=True)
    for schema_file in source.glob("*.json"):
        schema = json.loads(schema_file.read_text(encoding="utf-8"))
        schema.pop("$id", None)
        text = json.dumps(schema).replace('"/api/_definitions.json#', '"_definitions.json#')
        (target / schema_file.name).write_text(text, encoding="utf-8")
    stamp.write_text(wanted)
    return target_root


def kubeconform_schema_locations(project: Project, kube_version: str) -> list[str]:
    k8s = prepare_kubernetes_schemas(project, kube_version)
    return [
        str(k8s)
        + "/{{ .NormalizedKubernetesVersion }}-local{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json",
        str(project.ci_dir / "crd-schemas") + "/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json",
    ]


def render_matrix(
    project: Project,
    envs: list[str],
    instances: list[str],
    kube_version: str,
    report: LintReport,
    out_dir: Path,
) -> dict[str, str]:
    """The umbrella rendered for every env x instance into out_dir; returns {file: label}."""
    rendered = {}
    for env in envs:
        for name in instances:
            instance = resolve_instance(name)
            label = f"eks-neuron/{env}/{instance.name}"
            # The model server needs NeuronCore-v2+: on inf1 the rest of the stack is checked without it.
            without_serving = ["sd21-serving.enabled=false"] if instance.core_version == "NC-v1" else []
            try:
                sources = value_sources(project, instance, env, set_values=without_serving)
                manifests = render(project, sources, kube_version=kube_version)
            except NchartError as error:
                report.fail("render", label, _relative(project, project.env_values(env)), error.message)
                continue
            path = out_dir / f"{env}_{instance.slug}.yaml"
            path.write_text(manifests, encoding="utf-8")
            rendered[str(path)] = label
            report.ran("render")
    return rendered


def render_scenarios(project: Project, kube_version: str, report: LintReport, out_dir: Path) -> dict[str, str]:
    """Every chart rendered alone with each of its ci/*-values.yaml scenarios; returns {file: label}."""
    helm = project.tool("helm")
    rendered = {}
    for chart in project.charts():
        for scenario in ci_scenarios(chart):
            label = f"{chart.name}/ci/{scenario.name}"
            try:
                args = helm_template_args(chart, chart.name, "default", kube_version)
                manifests = run_helm(helm, args, load_values_file(scenario))
            except NchartError as error:
                report.fail("render", label, _relative(project, scenario), error.message)
                continue
            path = out_dir / f"ci_{chart.name}_{scenario.stem}.yaml"
            path.write_text(manifests, encoding="utf-8")
            rendered[str(path)] = label
            report.ran("render")
    return rendered


def validate_manifests(project: Project, rendered: dict[str, str], kube_version: str, report: LintReport) -> None:
    """kubeconform -strict over rendered files, against the Kubernetes and the CRD schemas."""
    if not rendered:
        return
    # Schemas exist per minor version; kubeconform looks them up by the full version.
    minor_version = ".".join(kube_version.lstrip("v").split(".")[:2]) + ".0"
    args = [project.tool("kubeconform"), "-strict", "-output", "json", "-kubernetes-version", minor_version]
    for location in kubeconform_schema_locations(project, kube_version):
        args += ["-schema-location", location]
    result = run_tool([*args, *rendered])
    try:
        resources = json.loads(result.stdout or "{}").get("resources", [])
    except json.JSONDecodeError:
        report.fail("kubeconform", "eks-neuron", "-", (result.stdout + result.stderr).strip()[:2000])
        return
    for resource in resources:
        if resource.get("status") in ("statusValid", "statusSkipped"):
            continue
        # "msg" carries the schema's own words (e.g. additional properties 'x' not allowed).
        details = resource.get("msg") or "; ".join(
            f"{e.get('path', '')}: {e.get('msg', '')}" for e in resource.get("validationErrors") or []
        )
        report.fail(
            "kubeconform",
            rendered.get(resource.get("filename", ""), resource.get("filename", "?")),
            f"{resource.get('kind')}/{resource.get('name')}",
            details,
        )
    if result.returncode != 0 and not resources:
        report.fail("kubeconform", "eks-neuron", "-", (result.stderr or result.stdout).strip()[:2000])
    report.ran("kubeconform", len(rendered))


# kube-score checks nchart lint does not apply, and why (the rest fail the lint on a CRITICAL grade).
KUBE_SCORE_NOT_APPLIED = {
    "container-image-pull-policy": "images are pinned to release tags, pulled IfNotPresent: Always would make every start depend on the registry",
    "container-ephemeral-storage-request-and-limit": "root filesystems are read-only where the image allows and writable volumes are emptyDirs with a sizeLimit",
    "pod-networkpolicy": "NetworkPolicies need a CNI that enforces them (the VPC CNI only with its network policy agent on); the platform owns them",
    "pod-probes-identical": "each component serves one health endpoint (kube-scheduler's /healthz, as its own manifests probe it)",
}
KUBE_SCORE_CRITICAL = 1


def check_pod_security(rendered: dict[str, str], report: LintReport) -> None:
    """Every workload's departures from Pod Security restricted are exactly its declared exceptions."""
    from .podsecurity import check_manifests
    from .render import parse_manifests

    for path, label in rendered.items():
        for where, problem in check_manifests(parse_manifests(Path(path).read_text(encoding="utf-8"))):
            report.fail("pod-security", label, where, problem)
        report.ran("pod-security")


def check_kube_score(project: Project, rendered: dict[str, str], kube_version: str, report: LintReport) -> None:
    """kube-score over every render: any CRITICAL finding fails (exceptions come from the workloads'
    kube-score/ignore annotations, which podSecurityExceptions writes)."""
    if not rendered:
        return
    args = [
        project.tool("kube-score"),
        "score",
        "--output-format",
        "json",
        "--kubernetes-version",
        "v" + ".".join(kube_version.lstrip("v").split(".")[:2]),
        "--ignore-container-cpu-limit",
        "--enable-optional-test",
        "container-seccomp-profile",
    ]
    for test in KUBE_SCORE_NOT_APPLIED:
        args += ["--ignore-test", test]
    for path, label in rendered.items():
        result = run_tool([*args, path])
        # It exits 1 on a CRITICAL finding too: only output that is not a score is a failure to run.
        try:
            scored = json.loads(result.stdout)
        except json.JSONDecodeError:
            report.fail("kube-score", label, "-", (result.stderr or result.stdout).strip()[:2000])
            continue
        for item in scored or []:
            name = (
                f"{(item.get('type_meta') or {}).get('kind', '?')}/{(item.get('object_meta') or {}).get('name', '?')}"
            )
            for check in item.get("checks") or []:
                if check.get("skipped") or check.get("grade") != KUBE_SCORE_CRITICAL:
                    continue
                comments = "; ".join(
                    f"{c.get('path') or ''} {c.get('summary', '')}".strip() for c in check.get("comments") or []
                )
                report.fail("kube-score", label, name, f"{check['check']['id']}: {comments}")
    report.ran("kube-score", len(rendered))


def run_lint(
    project: Project,
    envs: list[str],
    instances: list[str],
    kube_version: str,
    progress: Progress = lambda message: None,
) -> LintReport:
    report = LintReport()
    envs = envs or project.environments()
    for env in envs:
        project.existing_env_values(env)
    instances = instances or [i.name for i in primary_instances()]
    for name in instances:
        resolve_instance(name)  # unknown names stop here with the closest matches

    env_files = [project.env_values(env) for env in envs]
    chartdeps.ensure_built(project)
    for chart in project.charts():
        progress(f"linting chart {chart.name}")
        check_chart_metadata(project, chart, report)
        check_yaml_style(project, _yaml_files(chart), chart.name, report)
        # As chart-testing does: the ci/*-values.yaml scenarios when a chart has them, else its defaults.
        scenarios: list[Path | None] = [*ci_scenarios(chart)] or [None]
        extra = env_files if chart == project.umbrella else []
        check_helm_lint(project, chart, [*scenarios, *extra], report)
    check_yaml_style(project, env_files, "values", report)
    check_values_schemas(project, [*env_files, *sorted((project.umbrella / "ci").glob("*-values.yaml"))], report)
    progress("checking generated files")
    check_generated(project, report)
    with tempfile.TemporaryDirectory() as tmp:
        rendered = render_matrix(project, envs, instances, kube_version, report, Path(tmp))
        rendered.update(render_scenarios(project, kube_version, report, Path(tmp)))
        progress(
            f"rendered {len(rendered)} env x instance combinations and chart scenarios; validating with kubeconform"
        )
        validate_manifests(project, rendered, kube_version, report)
        progress("checking Pod Security exceptions and kube-score")
        check_pod_security(rendered, report)
        check_kube_score(project, rendered, kube_version, report)
    return report
