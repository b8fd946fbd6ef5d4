"""Values drawn from the charts' own schemas, and the property every draw must have: the render refuses
it with a message naming a drawn key, or the API server accepts every object it renders.

The draws come from the values.schema.json files (the umbrella's, each subchart's under its key, as
`nchart render` checks them), through a strategy built here rather than hypothesis-jsonschema:
hypothesis-jsonschema 0.23.1 (the newest on PyPI) fails on the Hypothesis releases current with our
other pins ('many' object has no attribute 'more', Hypothesis 6.170), and it draws whole documents,
where a user changes a few keys. Here a draw is a few keys of one or two objects (sibling keys together,
so that `autoscaling.mode` meets `autoscaling.minReplicas`), on the chart defaults or an environment file.

Keys typed by a Kubernetes definition (tolerations, probes, resources...) are passed through to the API
server, whose semantic rules (a toleration's operator and value, a probe's one handler) no schema holds;
for those a draw is a shape the schema must refuse at render: an unknown field or a wrongly typed one.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from nchart.core.formats import PRINTABLE_PATTERN
from nchart.core.schemacheck import combined_schema
from tests.support.charts import PROJECT

KeyPath = tuple[str, ...]

# Free-form objects no user sets: the library chart's values and the instance facts nchart fills from the
# catalog; and in each subchart, its copy of `global` (helm fills it from the umbrella's) and the library's.
INTERNAL_KEYS = {("eks-neuron-lib",), ("global", "neuron", "instance")}
INTERNAL_IN_SUBCHARTS = {("eks-neuron-lib",), ("global",)}


def internal_keys(root: dict[str, Any]) -> set[KeyPath]:
    subcharts = [k for k, v in root["properties"].items() if "eks-neuron-lib" in (v.get("properties") or {})]
    return INTERNAL_KEYS | {(chart, *key) for chart in subcharts for key in INTERNAL_IN_SUBCHARTS}


@dataclass(frozen=True)
class Leaf:
    """A key a user sets, with the schema its value must meet (references resolved from `definitions`)."""

    path: KeyPath
    schema: dict[str, Any]

    @property
    def key(self) -> str:
        return ".".join(part.replace(".", "\\.") for part in self.path)


def _is_free_form(schema: dict[str, Any]) -> bool:
    return (
        schema.get("type") == "object"
        and not schema.get("properties")
        and schema.get("additionalProperties") in (None, True)
        and "$ref" not in schema
    )


def _leaves(schema: dict[str, Any], path: KeyPath) -> Iterator[Leaf]:
    if schema.get("type") == "object" and schema.get("properties"):
        for key, sub in schema["properties"].items():
            yield from _leaves(sub, (*path, key))
    else:
        yield Leaf(path, schema)


def schema_root() -> dict[str, Any]:
    return combined_schema(PROJECT)


def user_leaves(root: dict[str, Any] | None = None) -> tuple[list[Leaf], list[KeyPath]]:
    """(the keys a user sets, the free-form objects among them)."""
    root = root or schema_root()
    internal = internal_keys(root)
    leaves, free_form = [], []
    for leaf in _leaves(root, ()):
        if any(leaf.path[: len(key)] == key for key in internal):
            continue
        if _is_free_form(leaf.schema):
            free_form.append(leaf.path)
        leaves.append(leaf)
    return leaves, free_form


def sibling_groups(leaves: Iterable[Leaf]) -> list[list[Leaf]]:
    """Leaves grouped by the object holding them, in schema order."""
    groups: dict[KeyPath, list[Leaf]] = {}
    for leaf in leaves:
        groups.setdefault(leaf.path[:-1], []).append(leaf)
    return list(groups.values())


# ---- values from a schema -------------------------------------------------------------------------

_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.text(max_size=4))
_TYPE_OF = {
    "null": type(None),
    "boolean": bool,
    "integer": int,
    "number": (int, float),
    "string": str,
    "array": list,
    "object": dict,
}


def resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if not ref:
        return schema
    name = ref.removeprefix("#/$defs/")
    return {**root["$defs"][name], **{k: v for k, v in schema.items() if k != "$ref"}}


def _kubernetes_type(schema: dict[str, Any]) -> bool:
    return "$ref" in schema


def values_for(schema: dict[str, Any], root: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """Values the schema accepts (a Kubernetes type: values it must refuse, see the module docstring)."""
    if _kubernetes_type(schema):
        return misshapen(resolve(schema, root))
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "const" in schema:
        return st.just(schema["const"])
    for combinator in ("anyOf", "oneOf"):
        if combinator in schema:
            rest = {k: v for k, v in schema.items() if k != combinator}
            return st.one_of([values_for({**rest, **option}, root, depth) for option in schema[combinator]])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([values_for({**schema, "type": one}, root, depth) for one in kind])
    if kind is None:
        return _SCALARS
    builder = _BUILDERS[kind]
    return builder(schema, root, depth)


def _integers(schema: dict[str, Any], root: dict[str, Any], depth: int) -> st.SearchStrategy[Any]:
    low, high = schema.get("minimum"), schema.get("maximum")
    if "exclusiveMinimum" in schema:
        low = int(schema["exclusiveMinimum"]) + 1
    if "exclusiveMaximum" in schema:
        high = int(schema["exclusiveMaximum"]) - 1
    edges = [
        v for v in (low, high, 0, 1) if v is not None and (low is None or v >= low) and (high is None or v <= high)
    ]
    return st.one_of(st.sampled_from(edges), st.integers(low, high)) if edges else st.integers(low, high)


def _numbers(schema: dict[str, Any], root: dict[str, Any], depth: int) -> st.SearchStrategy[Any]:
    low, high = schema.get("minimum"), schema.get("maximum")
    floats = st.floats(low, high, allow_nan=False, allow_infinity=False)
    whole = st.integers(None if low is None else int(-(-low // 1)), None if high is None else int(high // 1))
    return st.one_of(whole, floats)


# What a user types: printable text, tabs and line breaks included (PRINTABLE_PATTERN holds every string to it).
_TYPED = st.characters(exclude_categories=("Cc", "Cs", "Cn"), include_characters="\t\n")


def ecma_pattern(pattern: str) -> str:
    """A JSON Schema (ECMA-262) pattern as Python's re reads it the same way: its `$` ends the text,
    where Python's would also match before a final line break."""
    return re.sub(r"(?<!\\)\$", r"\\Z", pattern)


def _strings(schema: dict[str, Any], root: dict[str, Any], depth: int) -> st.SearchStrategy[Any]:
    low, high = schema.get("minLength", 0), schema.get("maxLength")
    patterns = [
        ecma_pattern(p) for p in [schema.get("pattern"), *(s.get("pattern") for s in schema.get("allOf", []))] if p
    ]
    own = [p for p in patterns if p != ecma_pattern(PRINTABLE_PATTERN)]
    # JSON Schema patterns search (unanchored), as Python's re.search does.
    drawn = (
        st.from_regex(own[0], alphabet=_TYPED) if own else st.text(_TYPED, min_size=low, max_size=high or max(low, 24))
    )
    return drawn.filter(
        lambda v: low <= len(v) <= (high if high is not None else len(v)) and all(re.search(p, v) for p in patterns)
    )


def _arrays(schema: dict[str, Any], root: dict[str, Any], depth: int) -> st.SearchStrategy[Any]:
    items = schema.get("items") or {}
    item_values = values_for(items, root, depth + 1) if depth < 4 else _SCALARS
    return st.lists(
        item_values,
        min_size=schema.get("minItems", 0),
        max_size=min(schema.get("maxItems", 3), 3),
        unique_by=(lambda v: json.dumps(v, sort_keys=True)) if schema.get("uniqueItems") else None,
    )


def _objects(schema: dict[str, Any], root: dict[str, Any], depth: int) -> st.SearchStrategy[Any]:
    properties = schema.get("properties") or {}
    extra = schema.get("additionalProperties", True)
    if properties:
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {k: values_for(v, root, depth + 1) for k, v in properties.items() if k in required},
            optional={k: values_for(v, root, depth + 1) for k, v in properties.items() if k not in required},
        )
    names = (
        values_for({"type": "string", **schema["propertyNames"]}, root)
        if "propertyNames" in schema
        else st.text(max_size=12)
    )
    item_values = values_for(extra, root, depth + 1) if isinstance(extra, dict) else _SCALARS
    return st.dictionaries(names, item_values, max_size=3)


_BUILDERS = {
    "null": lambda s, r, d: st.none(),
    "boolean": lambda s, r, d: st.booleans(),
    "integer": _integers,
    "number": _numbers,
    "string": _strings,
    "array": _arrays,
    "object": _objects,
}


def misshapen(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A Kubernetes object (or list of them) with a field its type does not have, or a field of a wrong
    JSON type: what a strict schema refuses at render, and the API server too."""
    if schema.get("type") == "array":
        return st.lists(misshapen(schema.get("items") or {}), min_size=1, max_size=2)
    properties = schema.get("properties") or {}
    unknown = st.text(alphabet=string.ascii_letters, min_size=1, max_size=10).filter(lambda k: k not in properties)
    with_unknown = st.dictionaries(unknown, _SCALARS, min_size=1, max_size=1)
    if not properties:
        return with_unknown
    mistyped = st.sampled_from(sorted(properties)).flatmap(
        lambda key: _SCALARS.filter(lambda v, key=key: not _json_type_fits(v, properties[key])).map(lambda v: {key: v})
    )
    return st.one_of(with_unknown, mistyped)


def _json_type_fits(value: Any, schema: dict[str, Any]) -> bool:
    if "$ref" in schema or "anyOf" in schema or "oneOf" in schema or "type" not in schema:
        return True  # not judged here: only plainly typed fields are mistyped on purpose
    kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    if isinstance(value, bool):
        return "boolean" in kinds
    return any(isinstance(value, _TYPE_OF[kind]) for kind in kinds) or (value is None and "null" in kinds)


# ---- draws, as values and as a command line -------------------------------------------------------


@dataclass(frozen=True)
class Draw:
    """Keys set on the chart defaults (env None) or on an environment file, as `--set`s would set them."""

    env: str | None
    assignments: tuple[tuple[KeyPath, Any], ...]

    @classmethod
    def from_options(cls, env: str | None, sets: Iterable[str] = (), set_jsons: Iterable[str] = ()) -> Draw:
        """The draw a corpus entry's --set and --set-json assignments make (one key each)."""
        from nchart.core.setvalues import parse_set, parse_set_json, split_key

        assignments = []
        for parse, options in ((parse_set_json, set_jsons), (parse_set, sets)):
            for option in options:
                path = tuple(split_key(option.partition("=")[0].strip()))
                value: Any = parse([option])
                for part in path:
                    value = value[part]
                assignments.append((path, value))
        return cls(env, tuple(assignments))

    def values(self) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for path, value in self.assignments:
            node = result
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = value
        return result

    def options(self) -> list[str]:
        words: list[str] = []
        for path, value in self.assignments:
            words += set_option(".".join(part.replace(".", "\\.") for part in path), value)
        return words

    def command(self, instance: str) -> str:
        """The draw as an `nchart render` command line, ready to paste."""
        env = ["--env", self.env] if self.env else []
        return " ".join(["nchart", "render", instance, *env, *(_quoted(word) for word in self.options())])

    def corpus_entry(self, outcome: str) -> str:
        """The draw as an entry of tests/e2e/values_fuzz_corpus.yaml, ready to paste."""
        words = self.options()
        entry: dict[str, Any] = {"found": "WHAT WAS WRONG", "env": self.env, "outcome": outcome}
        for flag in ("--set", "--set-json"):
            chosen = [words[i + 1] for i in range(0, len(words), 2) if words[i] == flag]
            if chosen:
                entry[flag.lstrip("-")] = chosen
        return json.dumps([entry], ensure_ascii=False)


def set_option(key: str, value: Any) -> list[str]:
    """`--set key=value` where --set reads the value back as it is, `--set-json` otherwise."""
    from nchart.core.setvalues import parse_set

    text = value if isinstance(value, str) else json.dumps(value)
    if not isinstance(value, (dict, list)) and _plain(text):
        try:
            round_trip = parse_set([f"x={text}"])["x"]
        except Exception:
            round_trip = object()
        if round_trip == value and type(round_trip) is type(value):
            return ["--set", f"{key}={text}"]
    return ["--set-json", f"{key}={json.dumps(value)}"]


def _plain(text: str) -> bool:
    return "," not in text and "{" not in text[:1] and text.isprintable()


def _quoted(word: str) -> str:
    return word if re.fullmatch(r"[\w@%+=:,./\\-]+", word) else "'" + word.replace("'", "'\\''") + "'"


@st.composite
def draws(draw: st.DrawFn, groups: list[list[Leaf]], envs: list[str | None], root: dict[str, Any]) -> Draw:
    """One or two objects' worth of keys (one to three siblings each), on the defaults or an environment."""
    env = draw(st.sampled_from(envs))
    assignments: list[tuple[KeyPath, Any]] = []
    for group in draw(st.lists(st.sampled_from(groups), min_size=1, max_size=2, unique_by=id)):
        picked = draw(st.lists(st.sampled_from(group), min_size=1, max_size=min(3, len(group)), unique_by=id))
        for leaf in picked:
            assignments.append((leaf.path, draw(values_for(leaf.schema, root))))
    return Draw(env, tuple(assignments))


# ---- the property ---------------------------------------------------------------------------------


def names_a_key(message: str, keys: Iterable[KeyPath]) -> bool:
    """The message's first line names one of the keys: its dotted path, whole or after its chart."""
    first_line = message.strip().splitlines()[0] if message.strip() else ""
    return any(".".join(path[start:]) in first_line for path in keys for start in range(min(2, len(path))))


@dataclass(frozen=True)
class Verdict:
    """`refused` (at render) or `accepted` (by the API server); `problem` says why the draw fails the
    property (None when it has it), with the command that reproduces it."""

    outcome: str
    problem: str | None = None


class ServerJudge:
    """Renders draws and has the local control plane's API server judge every object (server-side
    dry-run), each draw in a namespace of its own; `cleanup` deletes the namespaces it made."""

    FIELD_MANAGER = "eks-neuron-values-fuzz"

    def __init__(self, cluster: Any, instance: str, keys: Iterable[KeyPath]) -> None:
        self.cluster = cluster
        self.instance = instance
        self.keys = list(keys)
        self.created: set[str] = set()
        self.outcomes = {"refused": 0, "accepted": 0}

    def judge(self, draw: Draw) -> Verdict:
        verdict = self._judge(draw)
        self.outcomes[verdict.outcome] += 1
        return verdict

    def _judge(self, draw: Draw) -> Verdict:
        from nchart.core.catalog import resolve_instance
        from nchart.core.render import parse_manifests, render
        from nchart.core.values import ValuesSource, value_sources
        from nchart.errors import ExitCode, NchartError

        namespace = f"fuzz-{sum(self.outcomes.values()) + 1}"
        sources = [
            *value_sources(PROJECT, resolve_instance(self.instance), draw.env),
            ValuesSource("--set", draw.values()),
        ]
        reproduce = (
            f"\nreproduce: {draw.command(self.instance)} --namespace {namespace}"
            f"\nonce fixed, keep it in tests/e2e/values_fuzz_corpus.yaml:\n"
        )
        try:
            text = render(PROJECT, sources, namespace=namespace)
        except NchartError as error:
            if error.exit_code == ExitCode.USAGE and names_a_key(
                error.message, [p for p, _ in draw.assignments] + self.keys
            ):
                return Verdict("refused")
            problem = f"the render failed without naming a key ({error.exit_code.name}):\n{error.message}"
            return Verdict("refused", problem + reproduce + draw.corpus_entry("refused"))
        objects = [o for o in parse_manifests(text) if "helm.sh/hook" not in (o["metadata"].get("annotations") or {})]
        said = self._dry_run(objects, namespace)
        if said:
            problem = f"the render passed and the API server {said}"
            return Verdict("accepted", problem + reproduce + draw.corpus_entry("refused"))
        return Verdict("accepted")

    def _dry_run(self, objects: list[dict[str, Any]], release_namespace: str) -> str | None:
        """What the API server refused or warned about in a server-side dry-run of the objects; None if nothing."""
        from nchart.core.render import values_document

        self._namespaces(objects, release_namespace)
        by_namespace: dict[str, list[dict[str, Any]]] = {}
        for item in objects:
            by_namespace.setdefault(item["metadata"].get("namespace") or release_namespace, []).append(item)
        for target, items in sorted(by_namespace.items()):
            result = self._kubectl(
                "apply",
                "--server-side",
                "--dry-run=server",
                f"--field-manager={self.FIELD_MANAGER}",
                "-n",
                target,
                "-f",
                "-",
                input_text="\n---\n".join(values_document(o) for o in items),
            )
            said = result.stderr.strip()
            if result.returncode != 0 or said:
                return f"{'refused' if result.returncode != 0 else 'warned about'} it:\n{said}"
        return None

    def _namespaces(self, objects: list[dict[str, Any]], release_namespace: str) -> None:
        """The draw's namespaces exist first, as helm orders them: the rendered ones applied for real (their
        Pod Security labels then judge the pods), the others created bare. A namespace that was there
        before the fuzz (kube-system, default) is left as it is, and never deleted."""
        from nchart.core.render import values_document

        existing = {
            n.removeprefix("namespace/") for n in self._kubectl("get", "namespace", "-o", "name").stdout.split()
        }
        for namespace in (o for o in objects if o["kind"] == "Namespace"):
            name = namespace["metadata"]["name"]
            if name in existing and name not in self.created:
                continue
            applied = self._kubectl(
                "apply",
                "--server-side",
                f"--field-manager={self.FIELD_MANAGER}",
                "--force-conflicts",
                "-f",
                "-",
                input_text=values_document(namespace),
            )
            if applied.returncode == 0:
                self.created.add(name)
                existing.add(name)
        wanted = {release_namespace} | {o["metadata"]["namespace"] for o in objects if o["metadata"].get("namespace")}
        for name in sorted(wanted - existing):
            if self._kubectl("create", "namespace", name).returncode == 0:
                self.created.add(name)

    def _kubectl(self, *args: str, input_text: str | None = None) -> Any:
        from tests.support.cluster import run_tool

        return run_tool(self.cluster, "kubectl", *args, input_text=input_text, check=False)

    def cleanup(self) -> None:
        from tests.support.cluster import Pending, wait_for

        if not self.created:
            return
        self._kubectl("delete", "namespace", "--wait=false", *sorted(self.created))

        def gone() -> Any:
            left = self._kubectl("get", "namespace", "-o", "name", *sorted(self.created)).stdout.split()
            return Pending(f"still there: {left}") if left else True

        wait_for(gone, "the fuzzed draws' namespaces deleted")
