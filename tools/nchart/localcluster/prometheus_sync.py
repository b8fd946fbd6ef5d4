"""Feeds the Prometheus the operator configures (kube-prometheus-stack's) the configuration the operator
generates, as the config-reloader sidecar of its StatefulSet would: kwok runs no containers, so that
Prometheus runs on 127.0.0.1 beside the control plane.

Every couple of seconds it reads the operator's Secret `prometheus-<name>` (prometheus.yaml.gz) and its
rule ConfigMaps (`prometheus-name=<name>`), writes them where the local Prometheus reads them and, when
anything changed, asks it to reload. The configuration is the operator's, with only what a process off
the cluster needs changed:
- service discovery reads the API server through a kubeconfig (in a pod: its ServiceAccount);
- scrapes go through the pod network proxy (nchart.localcluster.podnetwork), since pod IPs exist only
  as addresses in the API here;
- rule files are read from the local copy of the ConfigMaps (in a pod: mounted at /etc/prometheus/rules).
Like the config-reloader, it expands the `$(VAR)` references the operator writes from the environment the
StatefulSet gives that container: POD_NAME and SHARD (one replica, shard 0, here).

    python -m nchart.localcluster.prometheus_sync --kubeconfig K --namespace NS --prometheus NAME \
        --config FILE --prometheus-url URL --proxy-url URL
"""

from __future__ import annotations

import argparse
import base64
import gzip
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

OPERATOR_RULES_DIR = "/etc/prometheus/rules/"
INTERVAL_S = 2.0


def expand_reloader_variables(text: str, prometheus: str) -> str:
    """`$(POD_NAME)` and `$(SHARD)` as the config-reloader of the StatefulSet's first pod expands them."""
    return text.replace("$(POD_NAME)", f"prometheus-{prometheus}-0").replace("$(SHARD)", "0")


def local_config(generated: dict[str, Any], kubeconfig: Path, rules_dir: Path, proxy_url: str) -> dict[str, Any]:
    """The operator's configuration as a Prometheus off the cluster must run it (see the module docstring)."""
    config = dict(generated)
    config["rule_files"] = [
        str(rules_dir / path[len(OPERATOR_RULES_DIR) :]) if path.startswith(OPERATOR_RULES_DIR) else path
        for path in config.get("rule_files") or []
    ]
    for job in config.get("scrape_configs") or []:
        for discovery in job.get("kubernetes_sd_configs") or []:
            discovery.pop("api_server", None)
            discovery["kubeconfig_file"] = str(kubeconfig)
        job["proxy_url"] = proxy_url
    return config


def read_generated(core: Any, namespace: str, name: str) -> tuple[dict[str, Any] | None, dict[str, dict[str, str]]]:
    """The operator's configuration (None until it has written one) and its rule files by ConfigMap."""
    from kubernetes.client.exceptions import ApiException

    try:
        secret = core.read_namespaced_secret(f"prometheus-{name}", namespace)
    except ApiException as error:
        if error.status == 404:
            return None, {}
        raise
    packed = (secret.data or {}).get("prometheus.yaml.gz")
    if not packed:
        return None, {}
    text = gzip.decompress(base64.b64decode(packed)).decode("utf-8")
    config = yaml.safe_load(expand_reloader_variables(text, name))
    maps = core.list_namespaced_config_map(namespace, label_selector=f"prometheus-name={name}").items
    rules = {
        m.metadata.name: dict(m.data or {}) for m in maps if m.metadata.name.startswith(f"prometheus-{name}-rulefiles")
    }
    return config, rules


def write_rules(rules_dir: Path, rules: dict[str, dict[str, str]]) -> bool:
    """Writes the rule files; True when anything changed."""
    changed = False
    wanted = {rules_dir / cm / key: text for cm, files in rules.items() for key, text in files.items()}
    for path in list(rules_dir.glob("*/*")):
        if path not in wanted:
            path.unlink()
            changed = True
    for path, text in wanted.items():
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            changed = True
    return changed


def reload(prometheus_url: str) -> str:
    request = urllib.request.Request(f"{prometheus_url}/-/reload", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return f"reloaded ({response.status})"
    except (urllib.error.URLError, OSError) as error:
        return f"reload failed: {error}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nchart.localcluster.prometheus_sync")
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--prometheus", required=True, help="the Prometheus resource's name")
    parser.add_argument("--config", type=Path, required=True, help="the configuration file Prometheus reads")
    parser.add_argument("--prometheus-url", required=True)
    parser.add_argument("--proxy-url", required=True)
    args = parser.parse_args(argv)

    from kubernetes import client, config

    core = client.CoreV1Api(config.new_client_from_config(config_file=str(args.kubeconfig)))
    rules_dir = args.config.parent / "rules"
    print(f"syncing {args.namespace}/prometheus-{args.prometheus} to {args.config}", flush=True)
    while True:
        try:
            generated, rules = read_generated(core, args.namespace, args.prometheus)
        except Exception as error:  # the API server restarting or not yet up: try again
            print(f"reading the operator's configuration: {error}", flush=True)
            time.sleep(INTERVAL_S)
            continue
        if generated is not None:
            changed = write_rules(rules_dir, rules)
            text = yaml.safe_dump(local_config(generated, args.kubeconfig, rules_dir, args.proxy_url), sort_keys=False)
            current = args.config.read_text(encoding="utf-8") if args.config.is_file() else ""
            if text != current:
                temporary = args.config.with_suffix(".tmp")
                temporary.write_text(text, encoding="utf-8")
                temporary.replace(args.config)
                changed = True
            if changed:
                jobs = len(generated.get("scrape_configs") or [])
                print(
                    f"configuration changed: {jobs} scrape jobs, {len(rules)} rule ConfigMaps; {reload(args.prometheus_url)}",
                    flush=True,
                )
        time.sleep(INTERVAL_S)


if __name__ == "__main__":
    sys.exit(main())
