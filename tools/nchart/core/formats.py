"""The formats the charts' schemas hold string values to, with the words a refusal uses for each.

Kubernetes' own (k8s.io/apimachinery/pkg/util/validation: IsDNS1123Label, IsDNS1035Label,
IsDNS1123Subdomain, IsQualifiedName, IsValidLabelValue), each also admitting "" where a key's empty
default means "the chart's choice"; and printable text for every other string. The generated schemas
carry the patterns (generate/value_formats.py); the schema check names them (schemacheck.py).
"""

from __future__ import annotations

from typing import Any

# Every string value the charts take is printable: the C0 controls but tab and line breaks, DEL, the C1
# controls and the two noncharacters YAML refuses break the manifests a template writes them into (or
# a label, a name, a URL). Written with the characters themselves, so that Go's regexp (helm) and
# Python's re read it the same way.
PRINTABLE_PATTERN = "^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff]*$"

# Lengths inside the patterns are bounded repetitions: Go's regexp (helm) has no lookahead.
_LABEL = "[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_NAME = "[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_SUBDOMAIN = f"{_LABEL}(\\.{_LABEL})*"
_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"

FORMATS: dict[str, dict[str, Any]] = {
    "dns-label": {"pattern": f"^({_LABEL})?$", "maxLength": 63},
    "dns-1035-label": {"pattern": "^([a-z]([-a-z0-9]{0,61}[a-z0-9])?)?$", "maxLength": 63},
    "dns-subdomain": {"pattern": f"^({_SUBDOMAIN})?$", "maxLength": 253},
    # A label's or an annotation's key: an optional DNS subdomain prefix and a name of 63 at most.
    "qualified-name": {"pattern": f"^({_SUBDOMAIN}/)?{_NAME}$", "maxLength": 317},
    "qualified-name-or-empty": {"pattern": f"^(({_SUBDOMAIN}/)?{_NAME})?$", "maxLength": 317},
    "label-value": {"pattern": f"^({_NAME})?$", "maxLength": 63},
    # A non-negative resource quantity (k8s.io/apimachinery/pkg/api/resource, quantity.go's grammar).
    "quantity": {"pattern": "^([0-9]+(\\.[0-9]*)?|\\.[0-9]+)([KMGTPE]i|[mkMGTPE]|[eE][+-]?[0-9]+)?$", "maxLength": 64},
    # The string form of an int-or-percent field (a PodDisruptionBudget's minAvailable).
    "percent": {"pattern": "^[0-9]+%$", "maxLength": 8, "minimum": 0},
    # A key of a Secret's or a ConfigMap's data (IsConfigMapKey).
    "data-key": {"pattern": "^[-._a-zA-Z0-9]{1,253}$", "maxLength": 253},
    # An Ingress rule's host: a DNS subdomain, or one with a leading `*.` wildcard.
    "ingress-host": {"pattern": f"^((\\*\\.)?{_SUBDOMAIN})?$", "maxLength": 253},
    # An IPv4 CIDR block in the form the API server takes without a warning (no leading zeros); the
    # charts' templates also refuse address bits set past the prefix, which no pattern can say.
    "ipv4-cidr": {"pattern": f"^{_OCTET}(\\.{_OCTET}){{3}}/(3[0-2]|[12][0-9]|[0-9])$", "maxLength": 18},
}

FORMAT_WORDS: dict[str, str] = {
    "dns-label": "a DNS-1123 label (at most 63 lower-case letters, digits and '-', starting and ending alphanumeric)",
    "dns-1035-label": "a DNS-1035 label (at most 63 lower-case letters, digits and '-', starting with a letter)",
    "dns-subdomain": "a DNS-1123 subdomain (lower-case labels of letters, digits and '-', joined by '.')",
    "qualified-name": "a label or annotation key (an optional DNS subdomain and '/', then at most 63 letters, "
    "digits, '-', '_' or '.', starting and ending alphanumeric)",
    "qualified-name-or-empty": "empty, or a label key (an optional DNS subdomain and '/', then at most 63 letters, "
    "digits, '-', '_' or '.', starting and ending alphanumeric)",
    "quantity": "a quantity (a number, optionally with a suffix: Ki, Mi, Gi, Ti, Pi, Ei, m, k, M, G, T, P, E)",
    "percent": "a percentage (digits and '%'), or give a number",
    "ingress-host": "a host name (a DNS-1123 subdomain, optionally after '*.'), or empty for any host",
    "data-key": "a Secret key (at most 253 letters, digits, '-', '_' or '.')",
    "label-value": "a label value (at most 63 letters, digits, '-', '_' or '.', starting and ending alphanumeric)",
    "ipv4-cidr": "an IPv4 CIDR block (a.b.c.d/prefix, each number without leading zeros)",
}


def format_named(pattern: str) -> str | None:
    """The format a schema pattern is, if it is one of ours."""
    return next((name for name, rule in FORMATS.items() if rule["pattern"] == pattern), None)
