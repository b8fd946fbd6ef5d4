"""Our charts against the official Neuron chart: the images each official release deploys (upstream.yaml,
with sources) beside the images our umbrella chart renders, component by component."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from ..errors import NchartError, UsageError
from .project import Project

RECORD = Path(__file__).with_name("upstream.yaml")
# Every optional component on, so each one's image is rendered.
ALL_COMPONENTS = (
    "neuron-dra-driver.enabled=true",
    "neuron-ultraserver-operator.enabled=true",
    "neuron-problem-detector.recovery.enabled=true",
    # Recovery refuses to render without a role; any ARN does for reading images.
    "neuron-problem-detector.serviceAccount.iamRoleArn=arn:aws:iam::111122223333:role/image-listing",
)


@dataclasses.dataclass(frozen=True)
class Release:
    version: str
    released: str
    verified: bool
    sources: tuple[str, ...]
    tags: dict[str, str]


@dataclasses.dataclass(frozen=True)
class Record:
    components: dict[str, str]  # component -> image repository
    departures: dict[str, str]  # component -> why we differ on purpose
    releases: dict[str, Release]  # newest first

    def release(self, version: str | None) -> Release:
        """The named release, or the newest recorded."""
        if version is None:
            return next(iter(self.releases.values()))
        if version not in self.releases:
            raise UsageError(
                f"the official chart {version} is not in {RECORD.name}; recorded: {', '.join(self.releases)}"
            )
        return self.releases[version]

    def verified(self) -> Release:
        """The newest release whose figures a primary source gives."""
        return next(r for r in self.releases.values() if r.verified)


@dataclasses.dataclass(frozen=True)
class Row:
    component: str
    official: str
    ours: str
    status: str  # "same", "differs", "departs" (on purpose), "missing" (we ship no such image)

    def our_tags(self) -> str:
        """What `ours` holds without the repository `official` names: our tags, or the departure's reason."""
        return self.ours.replace(f"{self.official.rpartition(':')[0]}:", "")


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def _bad(path: Path, key: str, expected: str) -> NchartError:
    # Exit 2, as other bad input: exit 1 is the comparison's "differs".
    return UsageError(f"{path.name}: {key}: expected {expected}")


def _release(path: Path, version: str, entry: Any, components: dict[str, str]) -> Release:
    key = f"releases.{version}"
    try:
        _version_key(version)
    except ValueError:
        raise _bad(path, key, "a version like 1.9.0") from None
    if not isinstance(entry, dict):
        raise _bad(path, key, "a mapping with released, verified, sources and tags")
    tags = entry.get("tags")
    if not isinstance(tags, dict) or set(tags) != set(components):
        raise _bad(path, f"{key}.tags", f"a tag for each component ({', '.join(components)})")
    sources = entry.get("sources")
    if not isinstance(sources, list) or not sources:
        raise _bad(path, f"{key}.sources", "where the figures were read (a list)")
    if not isinstance(entry.get("verified"), bool):
        raise _bad(path, f"{key}.verified", "true (a primary source gives the figures) or false")
    return Release(
        version=version,
        released=str(entry.get("released", "")),
        verified=entry["verified"],
        sources=tuple(" ".join(str(s).split()) for s in sources),
        tags={name: str(tag) for name, tag in tags.items()},
    )


def load_record(path: Path = RECORD) -> Record:
    """upstream.yaml, checked: a malformed entry is an error naming the file and the key."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise _bad(path, "(top level)", "a mapping with components, departures and releases")
    components = data.get("components")
    if not isinstance(components, dict) or not all(isinstance(v, str) for v in components.values()):
        raise _bad(path, "components", "a mapping of component name to image repository")
    departures = data.get("departures") or {}
    if not isinstance(departures, dict) or set(departures) - set(components):
        raise _bad(path, "departures", f"a mapping of components ({', '.join(components)}) to reasons")
    releases_data = data.get("releases")
    if not isinstance(releases_data, dict) or not releases_data:
        raise _bad(path, "releases", "a mapping of official chart versions")
    releases = [_release(path, str(version), entry, components) for version, entry in releases_data.items()]
    releases.sort(key=lambda r: _version_key(r.version), reverse=True)
    if not any(r.verified for r in releases):
        raise _bad(path, "releases", "at least one release with verified: true")
    reasons = {name: " ".join(str(reason).split()) for name, reason in departures.items()}
    return Record(dict(components), reasons, {r.version: r for r in releases})


def rendered_images(manifests: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Image repository -> the tags the rendered workloads run it at."""
    images: dict[str, set[str]] = {}

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            for key in ("containers", "initContainers"):
                for container in node.get(key) or []:
                    if isinstance(container, dict) and isinstance(container.get("image"), str):
                        repository, _, tag = container["image"].rpartition(":")
                        images.setdefault(repository, set()).add(tag)
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    for manifest in manifests:
        visit(manifest)
    return images


def shipped_images(project: Project) -> dict[str, set[str]]:
    """The images our umbrella chart renders with its defaults and every optional component on."""
    from .render import parse_manifests, render
    from .values import value_sources

    return rendered_images(
        parse_manifests(render(project, value_sources(project, None, None, set_values=ALL_COMPONENTS)))
    )


def compare(record: Record, release: Release, images: dict[str, set[str]]) -> list[Row]:
    rows = []
    for component, repository in record.components.items():
        official = f"{repository}:{release.tags[component]}"
        if component in record.departures:
            rows.append(Row(component, official, record.departures[component], "departs"))
            continue
        tags = images.get(repository)
        if not tags:
            rows.append(Row(component, official, "(not rendered)", "missing"))
            continue
        ours = ", ".join(f"{repository}:{tag}" for tag in sorted(tags))
        rows.append(Row(component, official, ours, "same" if tags == {release.tags[component]} else "differs"))
    return rows


def differences(rows: list[Row]) -> list[Row]:
    return [row for row in rows if row.status in ("differs", "missing")]
