"""What the schema accepts, the API server must accept: values drawn from the charts' own schemas (a few
keys at a time, on the defaults or an environment file), rendered, and every object sent to the local
control plane as a server-side dry-run. A draw passes if the render refuses it with a message naming a
key, or the API server accepts (and does not warn about) every object; any other outcome fails with the
smallest draw Hypothesis finds, as an `nchart render` command and a corpus entry.

`make test` runs DRAWS draws from a fixed seed; `make fuzz-values` runs more, from a seed of its own
(VALUES_FUZZ_DRAWS, VALUES_FUZZ_SEED). Every fault found is kept in values_fuzz_corpus.yaml and
replayed here with the outcome it must have now.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, seed, settings

from nchart.localcluster.cluster import LocalCluster
from tests.support.values_fuzz import Draw, ServerJudge, draws, schema_root, sibling_groups, user_leaves

DRAWS = int(os.environ.get("VALUES_FUZZ_DRAWS", "200"))
SEED = int(os.environ.get("VALUES_FUZZ_SEED", "20261128"))
INSTANCE = "inf2.xlarge"
ENVS: list[str | None] = [None, "dev", "staging", "prod"]
CORPUS = Path(__file__).with_name("values_fuzz_corpus.yaml")

ROOT_SCHEMA = schema_root()
LEAVES, FREE_FORM = user_leaves(ROOT_SCHEMA)


@pytest.fixture(scope="module")
def judge(cluster: LocalCluster) -> Iterator[ServerJudge]:
    server_judge = ServerJudge(cluster, INSTANCE, [leaf.path for leaf in LEAVES])
    yield server_judge
    print(
        f"\nvalues fuzz: {sum(server_judge.outcomes.values())} draws (seed {SEED}): "
        f"{server_judge.outcomes['refused']} refused at render, {server_judge.outcomes['accepted']} accepted"
    )
    server_judge.cleanup()


def test_every_key_a_user_sets_has_a_schema_that_can_refuse() -> None:
    # A free-form object accepts anything, so the property cannot hold for it: each is typed (a
    # Kubernetes definition, a CRD field, a map of labels) by the generator.
    assert FREE_FORM == []
    assert len(LEAVES) > 300


@settings(
    max_examples=DRAWS,
    deadline=None,
    database=None,
    phases=[Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
@seed(SEED)
@given(draw=draws(sibling_groups(LEAVES), ENVS, ROOT_SCHEMA))
def test_what_the_schema_accepts_the_api_server_accepts(judge: ServerJudge, draw: Draw) -> None:
    verdict = judge.judge(draw)
    assert verdict.problem is None, verdict.problem


def corpus() -> list[dict[str, Any]]:
    entries = yaml.safe_load(CORPUS.read_text(encoding="utf-8"))
    assert isinstance(entries, list) and entries
    return entries


@pytest.mark.parametrize("entry", corpus(), ids=lambda e: e["found"][:60])
def test_every_fault_the_fuzz_found_stays_fixed(judge: ServerJudge, entry: dict[str, Any]) -> None:
    draw = Draw.from_options(entry.get("env"), entry.get("set", []), entry.get("set-json", []))
    verdict = judge.judge(draw)
    assert verdict.problem is None, verdict.problem
    assert verdict.outcome == entry["outcome"], (
        f"{draw.command(INSTANCE)}: {verdict.outcome}, expected {entry['outcome']}"
    )
