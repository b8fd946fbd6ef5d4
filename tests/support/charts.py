"""The charts as the tests see them: the repository, its environments and instance types, renders
through nchart (cached per arguments), and finding objects in them."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from nchart.core.catalog import primary_instances, resolve_instance
from nchart.core.project import find_project
from nchart.core.render import parse_manifests, render
from nchart.core.values import value_sources

ROOT = Path(__file__).resolve().parents[2]
PROJECT = find_project(ROOT)
ENVS = PROJECT.environments()
# The render matrix covers each hardware once; aliases (SageMaker's ml.* names) share its facts.
INSTANCES = [i.name for i in primary_instances()]


@functools.cache
def _render_cached(instance: str | None, env: str | None, sets: tuple[str, ...]) -> str:
    target = resolve_instance(instance) if instance else None
    if target is not None and target.core_version == "NC-v1" and env is not None:
        # As `nchart lint` does: the model server cannot run on inf1, the rest of the stack is checked there.
        sets = ("sd21-serving.enabled=false", *sets)
    return render(PROJECT, value_sources(PROJECT, target, env, set_values=sets))


def render_objects(instance: str | None = None, env: str | None = None, *sets: str) -> list[dict[str, Any]]:
    return parse_manifests(_render_cached(instance, env, tuple(sets)))


def render_text(instance: str | None = None, env: str | None = None, *sets: str) -> str:
    return _render_cached(instance, env, tuple(sets))


def find(objects: list[dict[str, Any]], kind: str, name_suffix: str = "") -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith(name_suffix)]
    assert len(matches) == 1, f"expected one {kind} *{name_suffix}, found {[m['metadata']['name'] for m in matches]}"
    return matches[0]


def find_all(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]
