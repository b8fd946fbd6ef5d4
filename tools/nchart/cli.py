"""The nchart command line: thin commands over the catalog, values, render and lint modules."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import yaml

from . import __version__
from .errors import ExitCode, NchartError

if TYPE_CHECKING:
    from .project import Project

KUBE_VERSION = re.compile(r"^v?\d+\.\d+(\.\d+)?$")


def _kube_version(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not KUBE_VERSION.match(value):
        raise click.BadParameter(f"expected a Kubernetes version like 1.34.0, got {value!r}")
    return value


CONTEXT_SETTINGS = {"auto_envvar_prefix": "NCHART", "help_option_names": ["-h", "--help"]}


class NchartGroup(click.Group):
    """Turns NchartError into a one-line message and its exit code, never a traceback; click's own
    usage errors (a bad option, a missing argument) become one line too."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as error:
            command = error.ctx.command_path if error.ctx else "nchart"
            click.echo(f"nchart: error: {error.format_message()} (see `{command} --help`)", err=True)
            sys.exit(error.exit_code)
        except click.ClickException as error:
            click.echo(f"nchart: error: {error.format_message()}", err=True)
            sys.exit(error.exit_code)
        except click.Abort:
            click.echo("nchart: aborted", err=True)
            sys.exit(int(ExitCode.FAILURE))
        sys.exit(result if isinstance(result, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NchartError as error:
            for line in error.message.splitlines() or [""]:
                click.echo(f"nchart: error: {line.strip()}", err=True)
            ctx.exit(int(error.exit_code))
        except KeyboardInterrupt:
            click.echo("nchart: interrupted", err=True)
            ctx.exit(130)
        except BrokenPipeError:
            # The reader went away (`nchart render ... | head`): stop quietly, as SIGPIPE would.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(141)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as error:  # a bug in nchart: say so briefly; NCHART_DEBUG=1 shows where
            if os.environ.get("NCHART_DEBUG"):
                raise
            click.echo(
                f"nchart: internal error: {type(error).__name__}: {error} (rerun with NCHART_DEBUG=1 for details)",
                err=True,
            )
            ctx.exit(int(ExitCode.FAILURE))


@dataclasses.dataclass
class CliState:
    """What the group's options leave for the commands (click's ctx.obj)."""

    root: Path | None = None

    def project(self) -> Project:
        from .project import find_project

        return find_project(self.root, explicit=self.root is not None)


def _project(ctx: click.Context) -> Project:
    return ctx.ensure_object(CliState).project()


@click.group(cls=NchartGroup, context_settings=CONTEXT_SETTINGS)
@click.option(
    "--root", type=click.Path(file_okay=False), help="eks-neuron checkout (default: found from the working directory)."
)
@click.version_option(__version__, prog_name="nchart")
@click.pass_context
def cli(ctx: click.Context, root: str | None) -> None:
    """Render, lint and drive the eks-neuron charts for a Neuron instance type."""
    ctx.obj = CliState(Path(root) if root else None)


@cli.command()
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
def instances(output: str) -> None:
    """List the Neuron instance catalog."""
    from .catalog import load_catalog

    catalog = load_catalog()
    if output == "json":
        click.echo(json.dumps([i.as_values() for i in catalog.values()], indent=2))
        return
    header = ("INSTANCE", "CHIPS", "CORES/CHIP", "CORES", "LNC", "DEVICE MEM GiB", "VCPU", "HOST MEM GiB", "SAME AS")
    rows = [
        (
            i.name,
            i.chips,
            i.cores_per_chip,
            i.cores,
            i.lnc or "-",
            i.device_memory_gib,
            i.vcpu,
            i.host_memory_gib,
            i.alias_of or "",
        )
        for i in catalog.values()
    ]
    widths = [max(len(str(row[c])) for row in [header, *rows]) for c in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _value_options(function: Any) -> Any:
    function = click.option(
        "--env", "-e", help="Environment: layers values/ENV.yaml (and values/generated/ENV.yaml if present)."
    )(function)
    function = click.option(
        "-f",
        "--values",
        "values_files",
        multiple=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="Extra values file (repeatable, applied in order).",
    )(function)
    function = click.option(
        "--set", "set_values", multiple=True, metavar="KEY=VALUE", help="Set a value (repeatable, helm syntax)."
    )(function)
    return function


@cli.command()
@click.argument("instance")
@_value_options
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write one file per template under this directory.",
)
@click.option("-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
@click.option("--values-only", is_flag=True, help="Print the computed values instead of rendering.")
@click.option("--release", default="eks-neuron", show_default=True, help="Release name.")
@click.option("--namespace", "-n", default="kube-system", show_default=True, help="Release namespace.")
@click.option("--kube-version", callback=_kube_version, help="Kubernetes version to render for (helm --kube-version).")
@click.pass_context
def render(
    ctx: click.Context,
    instance: str,
    env: str | None,
    values_files: tuple[Path, ...],
    set_values: tuple[str, ...],
    output_dir: Path | None,
    output: str,
    values_only: bool,
    release: str,
    namespace: str,
    kube_version: str | None,
) -> None:
    """Render the umbrella chart for INSTANCE (inf2-24xlarge or inf2.24xlarge)."""
    from . import render as rendering
    from .catalog import resolve_instance
    from .values import merged, value_sources

    target = resolve_instance(instance)
    project = _project(ctx)
    sources = value_sources(project, target, env, values_files, set_values)
    if values_only:
        import yaml

        values = merged(sources)
        text = json.dumps(values, indent=2) if output == "json" else yaml.safe_dump(values, sort_keys=False)
        click.echo(text, nl=not text.endswith("\n"))
        return
    for source in sources:
        if source.note:
            click.echo(source.note, err=True)
    manifests = rendering.render(project, sources, release, namespace, kube_version)
    if output_dir is not None:
        written = rendering.write_output_dir(manifests, output_dir)
        click.echo(f"wrote {len(written)} files under {output_dir} for {target.name}", err=True)
    elif output == "json":
        click.echo(json.dumps(rendering.parse_manifests(manifests), indent=2))
    else:
        sys.stdout.write(manifests)


@cli.command()
@click.option(
    "--env", "-e", "envs", multiple=True, help="Environment to check (repeatable; default: every values/*.yaml)."
)
@click.option(
    "--instance",
    "-i",
    "instances_",
    multiple=True,
    help="Instance type to check (repeatable; default: the whole catalog).",
)
@click.option(
    "--kube-version",
    default="1.34.0",
    show_default=True,
    callback=_kube_version,
    help="Kubernetes version to render for and validate against.",
)
@click.pass_context
def lint(ctx: click.Context, envs: tuple[str, ...], instances_: tuple[str, ...], kube_version: str) -> None:
    """Lint every chart and validate the render of every environment x instance type."""
    from .lint import run_lint

    report = run_lint(
        _project(ctx), list(envs), list(instances_), kube_version, progress=lambda m: click.echo(m, err=True)
    )
    for line in report.lines():
        click.echo(line)
    if report.failures:
        ctx.exit(int(ExitCode.LINT_FAILED))


@cli.command()
@click.argument("instance", default="inf2-24xlarge")
@click.option("--env", "-e", default="prod", show_default=True)
@click.option("--runs", type=click.IntRange(min=3), default=15, show_default=True, help="Runs of each command.")
@click.option(
    "--target",
    type=float,
    default=1.2,
    show_default=True,
    help="Largest accepted nchart/helm ratio of medians (in-process render).",
)
@click.pass_context
def bench(ctx: click.Context, instance: str, env: str, runs: int, target: float) -> None:
    """Time `nchart render` against bare `helm template` of the same values (medians)."""
    from .bench import run_bench

    result = run_bench(_project(ctx), instance, env, runs)
    for line in result.lines():
        click.echo(line)
    if result.in_process_ratio > target:
        click.echo(f"in-process ratio {result.in_process_ratio:.2f} is over the target {target:.2f}", err=True)
        ctx.exit(int(ExitCode.BENCH_TARGET_MISSED))


@cli.command()
@click.option("--force", is_flag=True, help="Rebuild every chart's dependencies, current or not.")
@click.pass_context
def deps(ctx: click.Context, force: bool) -> None:
    """Build the charts' file:// dependencies (helm dependency build, leaf first) where their sources changed."""
    from . import chartdeps

    built = chartdeps.build(_project(ctx), progress=lambda m: click.echo(m, err=True), force=force)
    click.echo(f"built the dependencies of {', '.join(built)}" if built else "chart dependencies are current")


@cli.command()
@click.option(
    "--check", is_flag=True, help="Only compare: exit 3 and list the files that differ from what would be generated."
)
@click.pass_context
def generate(ctx: click.Context, check: bool) -> None:
    """Write the generated files: instance lists, values schemas, chart READMEs, dashboards."""
    from .generate import generate as run_generate

    result = run_generate(_project(ctx), check, progress=lambda m: click.echo(m, err=True))
    if check:
        if result.stale:
            click.echo(
                "stale generated files (run `make generate`, then commit):\n  " + "\n  ".join(result.stale), err=True
            )
            ctx.exit(int(ExitCode.LINT_FAILED))
        click.echo("generated files are current")
        return
    for path in result.written:
        click.echo(f"wrote {path}")
    if not result.written:
        click.echo("generated files were already current")


@cli.command("package")
@click.option(
    "--version", "version", required=True, help="Chart version for every chart (semver; a leading v is dropped)."
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the .tgz files go (default: build/release/VERSION).",
)
@click.option("--push", metavar="oci://REGISTRY/PATH", help="Push every package there (helm push).")
@click.option("--plain-http", is_flag=True, help="Talk to the registry over HTTP (a local registry).")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def package_command(
    ctx: click.Context, version: str, out_dir: Path | None, push: str | None, plain_http: bool, output: str
) -> None:
    """Package every chart at one version (dependencies rebuilt at it) and push them to an OCI registry."""
    from .package import check_version, package

    project = _project(ctx)
    version = check_version(version)
    out_dir = out_dir or project.root / "build" / "release" / version
    packaged = package(project, version, out_dir, push, plain_http, progress=lambda m: click.echo(m, err=True))
    if output == "json":
        click.echo(json.dumps([dataclasses.asdict(p) | {"package": str(p.package)} for p in packaged], indent=2))
        return
    for item in packaged:
        click.echo(" ".join(x for x in (item.reference or str(item.package), item.digest) if x))


@cli.command("tf")
@click.argument("action", type=click.Choice(["init", "plan", "apply", "destroy", "vars"]))
@click.option("--env", "-e", required=True, help="Environment: values/ENV.yaml and terraform/environments.yaml[ENV].")
@click.option(
    "--dir",
    "tf_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Terraform module (default: terraform/).",
)
@click.option(
    "--release", default="eks-neuron", show_default=True, help="Helm release name (ServiceAccount names for IAM trust)."
)
@click.option("--namespace", "-n", default="kube-system", show_default=True, help="Release namespace.")
@click.option("--auto-approve", is_flag=True, help="apply/destroy without asking.")
@click.pass_context
def tf_command(
    ctx: click.Context, action: str, env: str, tf_dir: Path | None, release: str, namespace: str, auto_approve: bool
) -> None:
    """Run terraform (init, plan, apply, destroy) with tfvars from the chart values; `vars` only prints them.

    After apply, the outputs become values/generated/ENV.yaml, which `nchart render --env ENV` layers on.
    """
    from . import tf

    project = _project(ctx)
    directory = (tf_dir or project.root / "terraform").resolve()
    if action == "vars":
        click.echo(json.dumps(tf.tfvars(project, directory, env, release, namespace), indent=2, sort_keys=True))
        return
    written = tf.run(project, directory, action, env, release, namespace, auto_approve, echo=click.echo)
    click.echo(f"nchart tf {action} --env {env}: wrote {tf.describe(written)}", err=True)


@cli.command()
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False, exists=True),
    help="Kubeconfig (default: $KUBECONFIG, ~/.kube/config).",
)
@click.option("--context", help="Kubeconfig context (default: the current one).")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--fix", is_flag=True, help="Clear stale usage maps on nodes where no live pod holds Neuron resources.")
@click.option("--yes", is_flag=True, help="With --fix: do not ask.")
@click.pass_context
def doctor(ctx: click.Context, kubeconfig: str | None, context: str | None, output: str, fix: bool, yes: bool) -> None:
    """Find what keeps Neuron pods from running on a live cluster; exit 0 clean, 1 warnings, 3 errors."""
    from . import doctor as checks

    api_client = _kubernetes_client(kubeconfig, context)
    with api_client:
        state = _read_cluster(api_client)
        findings = checks.diagnose(state, checks.utc_now())
        if output == "json":
            click.echo(json.dumps([f.as_json() for f in findings], indent=2))
        else:
            for line in checks.table(findings):
                click.echo(line)
        if fix:
            nodes = checks.clearable_usage_maps(state, findings)
            if not nodes:
                click.echo("--fix: nothing it may clear (stale usage maps on nodes without live Neuron pods)", err=True)
            elif yes or click.confirm(f"clear {', '.join(checks.USAGE_MAPS)} on {', '.join(nodes)}?", err=True):
                checks.clear_usage_maps(api_client, nodes)
                click.echo(f"cleared the usage maps on {', '.join(nodes)}", err=True)
                findings = checks.diagnose(_read_cluster(api_client), checks.utc_now())
    ctx.exit(int(checks.exit_code(findings)))


def _kubernetes_client(kubeconfig: str | None, context: str | None) -> Any:
    from kubernetes import config
    from kubernetes.config.config_exception import ConfigException

    try:
        return config.new_client_from_config(config_file=kubeconfig, context=context)
    except (ConfigException, OSError, ValueError, yaml.YAMLError) as error:
        where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        reason = " ".join(str(error).split())  # YAML errors span lines; the answer is one
        raise NchartError(f"{where}: cannot use this kubeconfig: {reason}", ExitCode.USAGE) from None


def _read_cluster(api_client: Any) -> Any:
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    from .doctor import ClusterState

    try:
        return ClusterState.read(api_client)
    except ApiException as error:
        raise NchartError(
            f"the API server refused to list: {error.status} {error.reason}", ExitCode.TOOL_FAILED
        ) from None
    except HTTPError as error:
        host = api_client.configuration.host
        raise NchartError(f"cannot reach the API server at {host}: {error}", ExitCode.TOOL_FAILED) from None


@cli.group()
def cluster() -> None:
    """A local Kubernetes control plane on 127.0.0.1 with fake Neuron nodes (etcd, kube-apiserver, kwok)."""


def _local_cluster(ctx: click.Context, state_dir: Path | None) -> Any:
    from .localcluster import LocalCluster

    project = _project(ctx)
    return LocalCluster(
        project, state_dir or project.root / "build" / "cluster", progress=lambda m: click.echo(m, err=True)
    )


_state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the cluster keeps its PKI, kubeconfig, logs and PIDs (default: build/cluster).",
)


@cluster.command("up")
@_state_dir_option
@click.pass_context
def cluster_up(ctx: click.Context, state_dir: Path | None) -> None:
    """Start the control plane with one fake node per catalog instance type (and a system node)."""
    local = _local_cluster(ctx, state_dir)
    local.up()
    click.echo(f"export KUBECONFIG={local.kubeconfig}")


@cluster.command("down")
@_state_dir_option
@click.pass_context
def cluster_down(ctx: click.Context, state_dir: Path | None) -> None:
    """Stop every process `nchart cluster up` started, by its PID; exit 5 naming any that would not stop."""
    stopped, left = _local_cluster(ctx, state_dir).down()
    click.echo(f"stopped {', '.join(stopped)}" if stopped else "no local cluster process was running")
    if left:
        raise NchartError(
            "could not stop " + "; ".join(process.describe() for process in left) + " (still in the state file)",
            ExitCode.TOOL_FAILED,
        )


@cluster.command("status")
@_state_dir_option
@click.pass_context
def cluster_status(ctx: click.Context, state_dir: Path | None) -> None:
    """Say which control-plane processes run; exit 1 when none does."""
    local = _local_cluster(ctx, state_dir)
    running = local.running()
    if not running:
        click.echo("no local cluster is running")
        ctx.exit(int(ExitCode.FAILURE))
    click.echo(f"running: {', '.join(running)}; API server {local.server}; KUBECONFIG={local.kubeconfig}")


def main() -> None:
    cli(prog_name="nchart")
