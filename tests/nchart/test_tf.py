"""Terraform: static checks of terraform/, and `nchart tf` end to end with the real terraform binary
against a fixture module of built-in resources that takes the same variables and gives the same outputs."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from nchart.cli import cli
from nchart.core.project import Project
from nchart.core.render import parse_manifests, render
from nchart.core.values import value_sources
from nchart.tf import terraform_blocks
from tests.support.charts import ROOT

TERRAFORM_DIR = ROOT / "terraform"
FIXTURE = ROOT / "tests/terraform/fixture"
pytestmark = pytest.mark.slow


def terraform_binary() -> str:
    local = ROOT / "bin/terraform"
    found = str(local) if local.is_file() else shutil.which("terraform")
    assert found, "terraform missing: run `make tools`"
    return found


@pytest.fixture(autouse=True)
def quiet_terraform_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty CLI config, so no user or machine setting changes what terraform does here."""
    config = tmp_path / "terraformrc"
    config.write_text("")
    monkeypatch.setenv("TF_CLI_CONFIG_FILE", str(config))
    monkeypatch.setenv("TF_PLUGIN_CACHE_DIR", "")


@pytest.fixture
def fixture_module(tmp_path: Path) -> Path:
    module = tmp_path / "module"
    shutil.copytree(FIXTURE, module, symlinks=False)  # resolves the link to the real variables.tf
    shutil.copy(TERRAFORM_DIR / "environments.yaml", module / "environments.yaml")
    return module


def run(project: Project, *args: str) -> Any:
    return CliRunner(mix_stderr=False).invoke(cli, ["--root", str(project.root), *args])


def test_terraform_is_formatted() -> None:
    result = subprocess.run(
        [terraform_binary(), "fmt", "-check", "-recursive", "-diff", str(TERRAFORM_DIR), str(FIXTURE)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_checkov_finds_nothing_unjustified() -> None:
    checkov = ROOT / ".venv-checkov/bin/checkov"
    assert checkov.is_file(), "checkov missing: run `make checkov`"
    result = subprocess.run(
        [
            str(checkov),
            "-d",
            str(TERRAFORM_DIR),
            "--framework",
            "terraform",
            "--skip-download",
            "--compact",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
    )
    report = json.loads(result.stdout)
    summary = report["summary"]
    failed = [f"{c['check_id']} {c['resource']} {c['file_path']}" for c in report["results"]["failed_checks"]]
    assert summary["failed"] == 0, failed
    assert summary["passed"] >= 50  # it really scanned the module
    skipped = report["results"]["skipped_checks"]
    assert all(check["check_result"].get("suppress_comment") for check in skipped), "every skip needs a reason"


def test_fixture_takes_the_same_variables_and_gives_the_same_outputs() -> None:
    assert (FIXTURE / "variables.tf").resolve() == (TERRAFORM_DIR / "variables.tf").resolve()
    assert terraform_blocks(FIXTURE, "output") == terraform_blocks(TERRAFORM_DIR, "output")
    assert {"cluster_name", "serving_role_arn", "recovery_role_arn", "model_bucket_name"} <= terraform_blocks(
        TERRAFORM_DIR, "output"
    )


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_tfvars_come_from_the_chart_values_and_settings(project_copy: Project, env: str) -> None:
    result = run(project_copy, "tf", "vars", "--env", env, "--release", "neuron", "--namespace", "inference")
    assert result.exit_code == 0, result.stderr
    variables = json.loads(result.stdout)
    assert variables["environment"] == env
    assert variables["cluster_name"] == f"eks-neuron-{env}"
    assert variables["model_bucket_name"] == f"eks-neuron-{env}-models"
    assert variables["model_key_prefix"] == "sd21-512/"
    # The IAM trust names exactly the ServiceAccounts the charts create for this release.
    objects = parse_manifests(
        render(project_copy, value_sources(project_copy, None, env), release="neuron", namespace="inference")
    )
    accounts = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in objects if o["kind"] == "ServiceAccount"}
    for key in ("serving_service_account", "recovery_service_account"):
        assert (variables[key]["namespace"], variables[key]["name"]) in accounts
    assert variables["serving_service_account"]["name"] == "neuron-sd21-serving"
    settings = yaml.safe_load((TERRAFORM_DIR / "environments.yaml").read_text())[env]
    assert {k: variables[k] for k in settings} == settings


def test_init_plan_apply_feed_outputs_back_into_the_values(project_copy: Project, fixture_module: Path) -> None:
    for action in ("init", "plan"):
        result = run(project_copy, "tf", action, "--env", "prod", "--dir", str(fixture_module))
        assert result.exit_code == 0, result.stdout + result.stderr
    assert "Plan: 5 to add" in result.stdout
    assert (fixture_module / "generated/prod.tfplan").is_file()
    applied = run(project_copy, "tf", "apply", "--env", "prod", "--dir", str(fixture_module), "--auto-approve")
    assert applied.exit_code == 0, applied.stdout + applied.stderr
    assert "Apply complete! Resources: 5 added" in applied.stdout
    overlay = yaml.safe_load(project_copy.generated_values("prod").read_text())
    assert (
        overlay["sd21-serving"]["serviceAccount"]["iamRoleArn"]
        == "arn:aws:iam::111122223333:role/eks-neuron-prod-sd21-serving"
    )
    assert (
        overlay["neuron-problem-detector"]["serviceAccount"]["iamRoleArn"]
        == "arn:aws:iam::111122223333:role/eks-neuron-prod-npd-recovery"
    )
    assert overlay["sd21-serving"]["karpenter"]["nodeClass"]["role"] == "eks-neuron-prod-karpenter-node"
    assert overlay["sd21-serving"]["model"]["s3Uri"] == "s3://eks-neuron-prod-models/sd21-512/model.tar.gz"
    # The in-cluster Grafana (the default backend) is opened by port-forward: no URL.
    assert overlay["global"]["monitoring"] == {"grafanaUrl": ""}
    # The load balancers' subnets, which the serving NetworkPolicy admits; the environment file's
    # stand-in figures are the same subnets, so a render before the first apply admits them too.
    cidrs = ["10.30.52.0/24", "10.30.53.0/24", "10.30.54.0/24"]
    assert overlay["sd21-serving"]["networkPolicy"] == {"ingressCIDRs": cidrs}
    prod_file = yaml.safe_load((project_copy.root / "values/prod.yaml").read_text())
    assert prod_file["sd21-serving"]["networkPolicy"]["ingressCIDRs"] == cidrs
    # The state is the environment's own workspace.
    state = fixture_module / "terraform.tfstate.d/prod/terraform.tfstate"
    assert json.loads(state.read_text())["outputs"]["cluster_name"]["value"] == "eks-neuron-prod"
    # nchart render --env prod picks the overlay up.
    from nchart.core.catalog import resolve_instance

    objects = parse_manifests(
        render(project_copy, value_sources(project_copy, resolve_instance("inf2.xlarge"), "prod"))
    )
    policies = {o["metadata"]["name"]: o for o in objects if o["kind"] == "NetworkPolicy"}
    admitted = [
        peer["ipBlock"]["cidr"]
        for peer in policies["eks-neuron-sd21-serving"]["spec"]["ingress"][0]["from"]
        if "ipBlock" in peer
    ]
    assert admitted == cidrs
    accounts = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ServiceAccount"}
    assert accounts["eks-neuron-neuron-problem-detector"]["metadata"]["annotations"][
        "eks.amazonaws.com/role-arn"
    ].endswith("eks-neuron-prod-npd-recovery")
    destroyed = run(project_copy, "tf", "destroy", "--env", "prod", "--dir", str(fixture_module), "--auto-approve")
    assert destroyed.exit_code == 0, destroyed.stdout + destroyed.stderr
    assert "Destroy complete! Resources: 5 destroyed" in destroyed.stdout
    assert not project_copy.generated_values("prod").exists()


def test_queue_mode_makes_the_job_queue_and_the_workers_find_it(project_copy: Project, fixture_module: Path) -> None:
    values_file = project_copy.root / "values/staging.yaml"
    values = yaml.safe_load(values_file.read_text())
    values["sd21-serving"].setdefault("server", {})["mode"] = "both"
    values["sd21-serving"]["queue"] = {"maxReceives": 5, "visibilityTimeoutSeconds": 900}
    values_file.write_text(yaml.safe_dump(values))
    # Before the queue exists the values cannot name it; the tfvars are still made.
    result = run(project_copy, "tf", "vars", "--env", "staging")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["job_queue"] == {
        "enabled": True,
        "max_receives": 5,
        "visibility_timeout_seconds": 900,
    }
    applied = run(project_copy, "tf", "apply", "--env", "staging", "--dir", str(fixture_module), "--auto-approve")
    assert applied.exit_code == 0, applied.stdout + applied.stderr
    state = json.loads((fixture_module / "terraform.tfstate.d/staging/terraform.tfstate").read_text())
    (queue,) = [r for r in state["resources"] if r["name"] == "job_queue"]
    assert queue["instances"][0]["attributes"]["output"]["value"]["max_receive"] == 7  # the redrive backstop
    overlay = yaml.safe_load(project_copy.generated_values("staging").read_text())
    assert overlay["sd21-serving"]["queue"] == {
        "url": "https://sqs.us-west-2.amazonaws.com/111122223333/eks-neuron-staging-jobs",
        "deadLetterUrl": "https://sqs.us-west-2.amazonaws.com/111122223333/eks-neuron-staging-jobs-dlq",
        "outputUri": "s3://eks-neuron-staging-models/generated/",
    }
    from nchart.core.catalog import resolve_instance

    objects = parse_manifests(
        render(project_copy, value_sources(project_copy, resolve_instance("inf2.xlarge"), "staging"))
    )
    (worker,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-worker")]
    env = {e["name"]: e.get("value") for e in worker["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["SD_QUEUE_URL"] == overlay["sd21-serving"]["queue"]["url"]
    assert env["SD_QUEUE_MAX_RECEIVES"] == "5"


def test_amazon_managed_monitoring_gives_the_charts_grafanas_url(project_copy: Project, fixture_module: Path) -> None:
    settings_file = fixture_module / "environments.yaml"
    settings = yaml.safe_load(settings_file.read_text())
    settings["prod"].update(monitoring_backend="amazon-managed", install_aws_load_balancer_controller=False)
    settings_file.write_text(yaml.safe_dump(settings))
    applied = run(project_copy, "tf", "apply", "--env", "prod", "--dir", str(fixture_module), "--auto-approve")
    assert applied.exit_code == 0, applied.stdout + applied.stderr
    variables = json.loads((fixture_module / "generated/prod.tfvars.json").read_text())
    assert (
        variables["monitoring_backend"] == "amazon-managed"
        and variables["install_aws_load_balancer_controller"] is False
    )
    overlay = yaml.safe_load(project_copy.generated_values("prod").read_text())
    assert overlay["global"]["monitoring"]["grafanaUrl"].startswith("https://g-")
    settings["prod"]["monitoring_backend"] = "grafana-cloud"
    settings_file.write_text(yaml.safe_dump(settings))
    refused = run(project_copy, "tf", "plan", "--env", "prod", "--dir", str(fixture_module))
    assert (
        refused.exit_code != 0
        and "monitoring_backend must be in-cluster or amazon-managed" in refused.stderr + refused.stdout
    )


def test_invalid_setting_is_refused_by_the_module_validation(project_copy: Project, fixture_module: Path) -> None:
    settings = yaml.safe_load((fixture_module / "environments.yaml").read_text())
    settings["staging"]["cluster_version"] = "1.20"
    (fixture_module / "environments.yaml").write_text(yaml.safe_dump(settings))
    result = run(project_copy, "tf", "plan", "--env", "staging", "--dir", str(fixture_module))
    assert result.exit_code == 5
    assert "cluster_version must be an EKS Kubernetes minor version" in result.stdout
    assert "terraform plan failed (exit 1)" in result.stderr and "Traceback" not in result.stderr


def test_init_without_registry_access_is_a_clear_error(
    project_copy: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = tmp_path / "needs-provider"
    shutil.copytree(FIXTURE, module, symlinks=False)
    shutil.copy(TERRAFORM_DIR / "environments.yaml", module)
    (module / "provider.tf").write_text(
        'terraform {\n  required_providers {\n    null = { source = "hashicorp/null", version = "3.2.3" }\n  }\n}\n'
    )
    # Providers only from an empty local mirror: what a machine without registry access sees.
    config = tmp_path / "offline.tfrc"
    config.write_text(
        f'provider_installation {{\n  filesystem_mirror {{\n    path = "{tmp_path / "mirror"}"\n  }}\n}}\n'
    )
    monkeypatch.setenv("TF_CLI_CONFIG_FILE", str(config))
    result = run(project_copy, "tf", "init", "--env", "dev", "--dir", str(module))
    assert result.exit_code == 5
    assert "could not fetch providers or modules from the Terraform registry" in result.stderr


def test_bad_environment_and_missing_terraform(
    project_copy: Project, fixture_module: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run(project_copy, "tf", "plan", "--env", "qa", "--dir", str(fixture_module))
    assert result.exit_code == 2 and "unknown environment 'qa'" in result.stderr
    (project_copy.values_dir / "qa.yaml").write_text((project_copy.values_dir / "dev.yaml").read_text())
    result = run(project_copy, "tf", "plan", "--env", "qa", "--dir", str(fixture_module))
    assert result.exit_code == 2 and "no settings for environment 'qa'" in result.stderr
    (project_copy.root / "bin").unlink()
    monkeypatch.setenv("PATH", "/nonexistent")
    result = run(project_copy, "tf", "plan", "--env", "dev", "--dir", str(fixture_module))
    assert result.exit_code == 4 and "terraform not found" in result.stderr


def test_values_without_a_model_uri_cannot_name_the_bucket(project_copy: Project, fixture_module: Path) -> None:
    dev = project_copy.values_dir / "dev.yaml"
    dev.write_text(dev.read_text().replace("s3Uri: s3://eks-neuron-dev-models/sd21-512/model.tar.gz", 's3Uri: ""'))
    result = run(project_copy, "tf", "vars", "--env", "dev")
    assert result.exit_code == 2
    assert "values/dev.yaml: sd21-serving.model.s3Uri is ''" in result.stderr
