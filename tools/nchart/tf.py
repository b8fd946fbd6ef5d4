"""`nchart tf`: Terraform in terraform/ driven from the chart values, and its outputs fed back as values."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from .core.project import Project
from .core.values import Values, chart_defaults, load_values_file, merge, merged, value_sources
from .errors import ExitCode, NchartError, UsageError

ACTIONS = ("init", "plan", "apply", "destroy")
SETTINGS_FILE = "environments.yaml"
# The infrastructure settings environments.yaml may hold (the rest comes from the chart values).
SETTINGS_KEYS = {
    "region",
    "cluster_version",
    "cluster_endpoint_public_access",
    "vpc_cidr",
    "availability_zone_count",
    "core_node_group",
    "serving_role_can_upload",
    "install_karpenter",
    "install_keda",
    "install_kube_prometheus_stack",
    "install_aws_load_balancer_controller",
    "install_metrics_server",
    "monitoring_backend",
    "job_queue",
    "tags",
}
REQUIRED_SETTINGS = {"region", "cluster_version", "vpc_cidr", "core_node_group"}
# terraform output -> where it goes in the chart values
OVERLAY_OUTPUTS = (
    "cluster_name",
    "model_bucket_name",
    "serving_role_arn",
    "recovery_role_arn",
    "karpenter_node_role_name",
    "grafana_url",
    "load_balancer_subnet_cidrs",
    "job_queue_url",
    "job_dead_letter_queue_url",
    "job_output_uri",
)
# Stand-ins for what Terraform has not made yet, so a release in queue mode renders to name its
# ServiceAccounts before the queue exists (the names do not depend on them).
QUEUE_PLACEHOLDERS = (
    "sd21-serving.queue.url=https://sqs.us-east-1.amazonaws.com/000000000000/not-created-yet",
    "sd21-serving.queue.outputUri=s3://not-created-yet/",
)
# What terraform prints when it cannot reach the registry for providers or modules.
_REGISTRY_FAILURE = re.compile(
    r"(Failed to query available provider packages|Failed to install provider|could not connect to registry|"
    r"Failed to download module|Error accessing remote module registry|registry\.terraform\.io)",
    re.IGNORECASE,
)

Echo = Callable[[str], None]


def workload_service_accounts(project: Project, env: str, release: str, namespace: str) -> dict[str, dict[str, str]]:
    """The ServiceAccount each IAM role must trust, read from the chart as rendered for this release:
    the account the serving Deployment and the node-problem-detector DaemonSet run as, wherever
    nameOverride, fullnameOverride, namespaceOverride or serviceAccount.name put it."""
    from .core.render import parse_manifests, render

    sources = value_sources(project, None, env, set_values=QUEUE_PLACEHOLDERS)
    objects = parse_manifests(render(project, sources, release, namespace))
    accounts = {}
    for chart, kind in (("sd21-serving", "Deployment"), ("neuron-problem-detector", "DaemonSet")):
        # In server.mode both the HTTP server and the queue workers run as the one ServiceAccount.
        workloads = [
            o
            for o in objects
            if o["kind"] == kind
            and o["metadata"]["labels"].get("helm.sh/chart", "").startswith(f"{chart}-")
            and o["metadata"]["labels"].get("app.kubernetes.io/component") != "queue-worker"
        ]
        if not workloads and chart == "sd21-serving":
            workloads = [o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith("-worker")]
        if len(workloads) != 1:
            raise UsageError(
                f"values/{env}.yaml: {chart} renders {len(workloads)} {kind}s; enable it so its IAM role "
                f"can trust its ServiceAccount ({chart}.enabled: true)"
            )
        workload = workloads[0]
        accounts[chart] = {
            "namespace": workload["metadata"]["namespace"],
            "name": workload["spec"]["template"]["spec"].get("serviceAccountName") or "default",
        }
    return accounts


def _chart_values(project: Project, env: str) -> Values:
    """values/<env>.yaml over the umbrella and subchart defaults that tfvars read."""
    defaults = chart_defaults(project, ["sd21-serving", "neuron-problem-detector"])
    return merge(defaults, merged(value_sources(project, None, env)))


def load_settings(project: Project, tf_dir: Path, env: str) -> dict[str, Any]:
    path = tf_dir / SETTINGS_FILE
    if not path.is_file():
        path = project.root / "terraform" / SETTINGS_FILE
    settings = load_values_file(path)
    if env not in settings:
        raise UsageError(f"{path}: no settings for environment {env!r} (has: {', '.join(settings) or 'none'})")
    entry = settings[env] or {}
    if not isinstance(entry, dict):
        raise UsageError(f"{path}: {env}: expected a mapping of settings, got {type(entry).__name__}")
    unknown = sorted(set(entry) - SETTINGS_KEYS)
    if unknown:
        raise UsageError(
            f"{path}: {env}: unknown keys {', '.join(unknown)}; expected some of {', '.join(sorted(SETTINGS_KEYS))}"
        )
    missing = sorted(REQUIRED_SETTINGS - set(entry))
    if missing:
        raise UsageError(f"{path}: {env}: missing {', '.join(missing)}")
    return dict(entry)


def tfvars(project: Project, tf_dir: Path, env: str, release: str, namespace: str) -> dict[str, Any]:
    """Terraform variables for env: infrastructure settings plus what the chart values already decide."""
    env_file = project.existing_env_values(env)
    values = _chart_values(project, env)
    where = env_file.relative_to(project.root)
    serving = values.get("sd21-serving") or {}
    uri = str((serving.get("model") or {}).get("s3Uri") or "")
    match = re.fullmatch(r"s3://([^/]+)/(.+)", uri)
    if not match:
        raise UsageError(
            f"{where}: sd21-serving.model.s3Uri is {uri!r}; the model bucket and key prefix come from it (s3://bucket/prefix/model.tar.gz)"
        )
    bucket, key = match.groups()
    prefix = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
    accounts = workload_service_accounts(project, env, release, namespace)
    variables = {
        "environment": env,
        "cluster_name": values["global"]["clusterName"],
        "model_bucket_name": bucket,
        "model_key_prefix": prefix,
        "serving_service_account": accounts["sd21-serving"],
        "recovery_service_account": accounts["neuron-problem-detector"],
    }
    # The job queue follows the chart: made when the workers run, with their tries and visibility;
    # environments.yaml may set its retention and output prefix.
    queue = serving.get("queue") or {}
    variables["job_queue"] = {
        "enabled": (serving.get("server") or {}).get("mode", "http") in ("queue", "both"),
        "max_receives": queue.get("maxReceives", 3),
        "visibility_timeout_seconds": queue.get("visibilityTimeoutSeconds", 300),
    }
    settings = load_settings(project, tf_dir, env)
    job_queue = settings.pop("job_queue", None) or {}
    if not isinstance(job_queue, dict):
        raise UsageError(
            f"terraform/{SETTINGS_FILE}: {env}: job_queue must be a mapping (retention_seconds, output_prefix), "
            f"got {type(job_queue).__name__}"
        )
    variables["job_queue"].update(job_queue)
    variables.update(settings)
    return variables


def write_tfvars(tf_dir: Path, env: str, variables: dict[str, Any]) -> Path:
    path = tf_dir / "generated" / f"{env}.tfvars.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(variables, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def run_terraform(terraform: str, tf_dir: Path, args: list[str], echo: Echo, capture: bool = False) -> str:
    """Runs terraform -chdir=tf_dir ARGS without a shell, streaming its output; returns it when captured."""
    command = [terraform, f"-chdir={tf_dir}", *args]
    env = {**os.environ, "TF_IN_AUTOMATION": "1"}
    tail: deque[str] = deque(maxlen=200)
    try:
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            stdin=None if sys.stdin and sys.stdin.isatty() else subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise NchartError(f"terraform not found at {terraform}; run `make tools`", ExitCode.TOOL_MISSING) from None
    assert process.stdout is not None
    output = []
    for line in process.stdout:
        tail.append(line)
        if capture:
            output.append(line)
        else:
            echo(line.rstrip("\n"))
    code = process.wait()
    if code != 0:
        text = "".join(tail)
        if args[0] == "init" and _REGISTRY_FAILURE.search(text):
            raise NchartError(
                f"terraform init in {tf_dir} could not fetch providers or modules from the Terraform registry. "
                "Run it where the registry is reachable, or point TF_CLI_CONFIG_FILE at a provider mirror "
                "(provider_installation) and vendor the modules.",
                ExitCode.TOOL_FAILED,
            )
        detail = text.strip()[-1500:] if capture else "see its output above"
        raise NchartError(f"terraform {args[0]} failed (exit {code}): {detail}", ExitCode.TOOL_FAILED)
    return "".join(output)


def overlay_from_outputs(outputs: dict[str, Any], values: Values) -> Values:
    """Chart values from `terraform output -json`: what the charts need to find what Terraform made."""
    missing = [name for name in OVERLAY_OUTPUTS if name not in outputs]
    if missing:
        raise NchartError(f"terraform outputs lack {', '.join(missing)}; the module must output them")
    value = {name: outputs[name]["value"] for name in OVERLAY_OUTPUTS}
    key = re.sub(r"^s3://[^/]+/", "", str(values["sd21-serving"]["model"]["s3Uri"]))
    return {
        "global": {"clusterName": value["cluster_name"], "monitoring": {"grafanaUrl": value["grafana_url"]}},
        "neuron-problem-detector": {"serviceAccount": {"iamRoleArn": value["recovery_role_arn"]}},
        "sd21-serving": {
            "serviceAccount": {"iamRoleArn": value["serving_role_arn"]},
            "model": {"s3Uri": f"s3://{value['model_bucket_name']}/{key}"},
            "karpenter": {"nodeClass": {"role": value["karpenter_node_role_name"]}},
            "networkPolicy": {"ingressCIDRs": list(value["load_balancer_subnet_cidrs"])},
            **(
                {
                    "queue": {
                        "url": value["job_queue_url"],
                        "deadLetterUrl": value["job_dead_letter_queue_url"],
                        "outputUri": value["job_output_uri"],
                    }
                }
                if value["job_queue_url"]
                else {}
            ),
        },
    }


def write_overlay(project: Project, env: str, overlay: Values) -> Path:
    path = project.generated_values(env)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = f"# Generated by `nchart tf apply --env {env}` from terraform outputs; do not edit.\n"
    path.write_text(header + yaml.safe_dump(overlay, sort_keys=False), encoding="utf-8")
    return path


def run(
    project: Project,
    tf_dir: Path,
    action: str,
    env: str,
    release: str,
    namespace: str,
    auto_approve: bool,
    echo: Echo,
) -> list[Path]:
    """One `nchart tf ACTION`; returns the files it wrote."""
    if action not in ACTIONS:
        raise UsageError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
    if not (tf_dir / "variables.tf").is_file():
        raise UsageError(f"{tf_dir}: not a Terraform module (no variables.tf)")
    terraform = project.tool("terraform")
    variables = tfvars(project, tf_dir, env, release, namespace)
    var_file = write_tfvars(tf_dir, env, variables)
    written = [var_file]
    relative_var_file = str(var_file.relative_to(tf_dir))
    if action == "init" or not (tf_dir / ".terraform").is_dir():
        run_terraform(terraform, tf_dir, ["init", "-input=false"], echo)
    # One state per environment.
    run_terraform(terraform, tf_dir, ["workspace", "select", "-or-create", env], echo)
    approve = ["-auto-approve"] if auto_approve else []
    if action == "plan":
        run_terraform(
            terraform,
            tf_dir,
            ["plan", "-input=false", f"-var-file={relative_var_file}", f"-out=generated/{env}.tfplan"],
            echo,
        )
        written.append(tf_dir / "generated" / f"{env}.tfplan")
    elif action == "apply":
        run_terraform(terraform, tf_dir, ["apply", "-input=false", f"-var-file={relative_var_file}", *approve], echo)
        outputs = json.loads(run_terraform(terraform, tf_dir, ["output", "-json"], echo, capture=True))
        overlay = overlay_from_outputs(outputs, _chart_values(project, env))
        written.append(write_overlay(project, env, overlay))
    elif action == "destroy":
        run_terraform(terraform, tf_dir, ["destroy", "-input=false", f"-var-file={relative_var_file}", *approve], echo)
        overlay_path = project.generated_values(env)
        if overlay_path.is_file():
            overlay_path.unlink()
    return written


def terraform_blocks(tf_dir: Path, kind: str) -> set[str]:
    """Names of `variable` or `output` blocks in a module's .tf files."""
    names = set()
    for path in tf_dir.glob("*.tf"):
        names.update(re.findall(rf'^{kind}\s+"([^"]+)"', path.read_text(encoding="utf-8"), flags=re.MULTILINE))
    return names


def describe(paths: Iterable[Path]) -> str:
    return ", ".join(str(p) for p in paths)
