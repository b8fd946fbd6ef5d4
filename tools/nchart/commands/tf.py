"""`nchart tf ACTION --env ENV`: terraform with tfvars from the chart values, outputs back into values."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .common import project_of


@click.command("tf")
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
    from .. import tf

    project = project_of(ctx)
    directory = (tf_dir or project.root / "terraform").resolve()
    if action == "vars":
        click.echo(json.dumps(tf.tfvars(project, directory, env, release, namespace), indent=2, sort_keys=True))
        return
    written = tf.run(project, directory, action, env, release, namespace, auto_approve, echo=click.echo)
    click.echo(f"nchart tf {action} --env {env}: wrote {tf.describe(written)}", err=True)
