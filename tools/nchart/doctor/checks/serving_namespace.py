"""serving-namespace: a serving Deployment's ServiceAccount exists and has an IAM role, the Secrets its pods
mount or read exist (the API tokens above all), and its namespace's Pod Security level allows its hostPath
model cache."""

from __future__ import annotations

import datetime as dt

from ...core.names import ROLE_ARN_ANNOTATION
from ..findings import Finding, Severity
from ..state import (
    ClusterState,
    Json,
    labels_of,
    name_of,
    namespace_of,
    pod_spec_of,
    ref_of,
)


def check_serving_namespaces(state: ClusterState, now: dt.datetime) -> list[Finding]:
    findings = []
    namespaces = {name_of(n): n for n in state.namespaces}
    accounts = {(namespace_of(a), name_of(a)): a for a in state.service_accounts}
    for deployment in state.deployments:
        if labels_of(deployment).get("app.kubernetes.io/name") != "sd21-serving":
            continue
        namespace, spec = namespace_of(deployment), pod_spec_of(deployment)
        where = ref_of("Deployment", deployment)
        account_name = spec.get("serviceAccountName") or "default"
        account = accounts.get((namespace, account_name))
        if account is None:
            findings.append(
                Finding(
                    Severity.ERROR,
                    "serving-namespace",
                    where,
                    f"its ServiceAccount {namespace}/{account_name} does not exist: no pod can be created",
                    f"kubectl -n {namespace} create serviceaccount {account_name} (or set "
                    "sd21-serving.serviceAccount.create=true)",
                )
            )
        elif ROLE_ARN_ANNOTATION not in ((account.get("metadata") or {}).get("annotations") or {}):
            findings.append(
                Finding(
                    Severity.WARNING,
                    "serving-namespace",
                    where,
                    f"its ServiceAccount {namespace}/{account_name} has no {ROLE_ARN_ANNOTATION}: the model "
                    "fetch from S3 has no IAM role (unless the node's role may read the bucket)",
                    f"kubectl -n {namespace} annotate serviceaccount {account_name} {ROLE_ARN_ANNOTATION}=<role ARN> "
                    "(sd21-serving.serviceAccount.iamRoleArn; nchart tf apply writes it)",
                )
            )
        secrets = {name_of(s) for s in state.secrets or [] if namespace_of(s) == namespace}
        for secret, used_as in sorted(required_secrets(spec).items()):
            if state.secrets is None or secret in secrets:  # None: doctor may not list Secrets here
                continue
            tokens = used_as == "volume api-tokens"
            findings.append(
                Finding(
                    Severity.ERROR,
                    "serving-namespace",
                    where,
                    f"its Secret {namespace}/{secret} ({used_as}) does not exist: its pods cannot start "
                    f"({'ContainerCreating' if used_as.startswith('volume') else 'CreateContainerConfigError'})",
                    (
                        f"kubectl -n {namespace} create secret generic {secret} --from-literal=<client>=<token> "
                        "(sd21-serving.auth.existingSecret names it; or leave that empty and set sd21-serving.auth.tokens)"
                        if tokens
                        else f"create Secret {namespace}/{secret}, or correct the value that names it"
                    ),
                )
            )
        level = labels_of(namespaces.get(namespace, {})).get("pod-security.kubernetes.io/enforce", "privileged")
        uses_host_path = any("hostPath" in v for v in spec.get("volumes") or [])
        if uses_host_path and level in ("baseline", "restricted"):
            findings.append(
                Finding(
                    Severity.ERROR,
                    "serving-namespace",
                    where,
                    f"it mounts a hostPath model cache, which namespace {namespace} (Pod Security {level}) refuses",
                    f"kubectl label namespace {namespace} pod-security.kubernetes.io/enforce=privileged --overwrite "
                    "(or sd21-serving.model.volume=emptyDir)",
                )
            )
    return findings


def required_secrets(spec: Json) -> dict[str, str]:
    """Secret name -> how the pod uses it, for each Secret a pod of `spec` cannot start without."""
    needed: dict[str, str] = {}
    for volume in spec.get("volumes") or []:
        secret = volume.get("secret") or {}
        if secret.get("secretName") and not secret.get("optional"):
            needed.setdefault(secret["secretName"], f"volume {volume.get('name')}")
        for source in (volume.get("projected") or {}).get("sources") or []:
            projected = source.get("secret") or {}
            if projected.get("name") and not projected.get("optional"):
                needed.setdefault(projected["name"], f"volume {volume.get('name')}")
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        for env in container.get("env") or []:
            ref = (env.get("valueFrom") or {}).get("secretKeyRef") or {}
            if ref.get("name") and not ref.get("optional"):
                needed.setdefault(ref["name"], f"env {env.get('name')} of container {container.get('name')}")
        for source in container.get("envFrom") or []:
            ref = source.get("secretRef") or {}
            if ref.get("name") and not ref.get("optional"):
                needed.setdefault(ref["name"], f"envFrom of container {container.get('name')}")
    return needed
