"""`nchart upstream`: our charts' images against the official Neuron chart's releases, from the record
with its sources (tools/nchart/core/upstream.yaml) and a real render of our charts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from nchart.cli import cli
from nchart.core.project import Project
from nchart.core.upstream import RECORD, compare, differences, load_record, rendered_images, shipped_images
from nchart.errors import ExitCode, NchartError
from tests.support.charts import PROJECT, ROOT, find, render_objects


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner(mix_stderr=False).invoke(cli, ["--root", str(ROOT), "upstream", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_the_charts_deploy_what_the_newest_verified_official_release_does() -> None:
    """The currency check CI holds the charts to: every component at the verified release's image."""
    verified = load_record().verified()
    code, out, err = run("--release", verified.version, "-o", "json")
    assert code == 0, err
    document = json.loads(out)
    assert document["verified"] is True and document["release"] == verified.version
    statuses = {row["component"]: row["status"] for row in document["components"]}
    assert statuses.pop("my-scheduler") == "departs"
    assert set(statuses.values()) == {"same"}, statuses


def test_an_unverified_newer_release_names_each_component_that_differs() -> None:
    code, out, err = run("--release", "1.10.0")
    assert code == 1
    assert "figures unverified" in out
    # The device plugin the chart renders against the 1.10.0 figure, both read independently.
    plugin = find(render_objects(), "DaemonSet", "neuron-device-plugin")["spec"]["template"]["spec"]["containers"][0]
    assert plugin["image"].endswith(":2.31.0.0")
    assert "device-plugin (2.31.0.0; official 2.32.0.0)" in err
    assert "node-problem-detector (v1.35.2; official v1.36.0)" in err
    assert "my-scheduler" not in err  # a declared departure is not a difference


def test_the_default_release_is_the_newest_recorded() -> None:
    _, out, _ = run()
    assert out.splitlines()[0].startswith("official chart 1.10.0 ")


def test_an_unknown_release_is_a_usage_error_listing_the_recorded_ones() -> None:
    code, _, err = run("--release", "9.9.9")
    assert code == 2
    assert "the official chart 9.9.9 is not in upstream.yaml; recorded: 1.10.0, 1.9.0" in err


def test_a_changed_or_missing_image_is_a_difference() -> None:
    record = load_record()
    release = record.verified()
    images = shipped_images(PROJECT)
    assert not differences(compare(record, release, images))
    plugin = record.components["device-plugin"]
    bumped = {**images, plugin: {"2.99.0.0"}}
    (row,) = differences(compare(record, release, bumped))
    assert (row.component, row.status) == ("device-plugin", "differs")
    two_tags = {**images, plugin: {release.tags["device-plugin"], "2.99.0.0"}}
    assert [r.component for r in differences(compare(record, release, two_tags))] == ["device-plugin"]
    without = {repository: tags for repository, tags in images.items() if repository != plugin}
    (row,) = differences(compare(record, release, without))
    assert (row.component, row.status) == ("device-plugin", "missing")


def test_images_are_read_from_containers_and_init_containers() -> None:
    pod = {
        "spec": {
            "initContainers": [{"image": "reg.example/a/fetch:1"}],
            "containers": [{"image": "reg.example:5000/b:2.0"}],
        }
    }
    assert rendered_images([{"kind": "Job", "spec": {"template": pod}}]) == {
        "reg.example/a/fetch": {"1"},
        "reg.example:5000/b": {"2.0"},
    }


@pytest.mark.parametrize(
    "edit,says",
    [
        (
            lambda d: d["releases"]["1.9.0"]["tags"].pop("dra-driver"),
            "releases.1.9.0.tags: expected a tag for each component",
        ),
        (lambda d: d["releases"]["1.9.0"].update(verified="yes"), "releases.1.9.0.verified: expected true"),
        (
            lambda d: d["releases"]["1.9.0"].update(sources=[]),
            "releases.1.9.0.sources: expected where the figures were read",
        ),
        (lambda d: d["departures"].update({"kubelet": "x"}), "departures: expected a mapping of components"),
        (
            lambda d: d["releases"]["1.9.0"].update(verified=False),
            "releases: expected at least one release with verified: true",
        ),
        (lambda d: d["releases"].update({"next": {}}), "releases.next: expected a version like 1.9.0"),
    ],
)
def test_a_malformed_record_names_the_key(tmp_path: Path, edit: object, says: str) -> None:
    data = yaml.safe_load(RECORD.read_text(encoding="utf-8"))
    edit(data)  # type: ignore[operator]
    path = tmp_path / "upstream.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(NchartError) as caught:
        load_record(path)
    assert caught.value.message.startswith("upstream.yaml: ") and says in caught.value.message
    assert caught.value.exit_code == ExitCode.USAGE


def test_every_recorded_release_names_its_sources() -> None:
    for release in load_record().releases.values():
        assert any(
            "https://github.com/aws-neuron/neuron-helm-charts/releases/tag/" + release.version in s
            for s in release.sources
        )


def test_a_chart_that_moves_off_the_verified_release_is_caught(project_copy: Project) -> None:
    """An image bumped in a chart alone (no record of an official release deploying it) fails the check
    and makes the README's versions table stale."""
    chart = project_copy.charts_dir / "neuron-device-plugin" / "Chart.yaml"
    chart.write_text(chart.read_text().replace('appVersion: "2.31.0.0"', 'appVersion: "2.31.0.1"'))
    verified = load_record().verified().version
    result = CliRunner(mix_stderr=False).invoke(
        cli, ["--root", str(project_copy.root), "upstream", "--release", verified]
    )
    assert result.exit_code == 1
    assert f"differ from the official chart {verified} in: device-plugin (2.31.0.1; official 2.31.0.0)" in result.stderr
    check = CliRunner(mix_stderr=False).invoke(cli, ["--root", str(project_copy.root), "generate", "--check"])
    assert check.exit_code == 3 and "README.md" in check.stderr
