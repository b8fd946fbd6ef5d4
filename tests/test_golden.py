"""Rendered output compared with reviewed golden files; `pytest --update-golden` rewrites them."""

from __future__ import annotations

import pytest
from conftest import ROOT, render_text

GOLDEN = {
    "default.yaml": (None, None),
    "inf2.24xlarge-prod.yaml": ("inf2.24xlarge", "prod"),
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_render_matches_golden(name: str, update_golden: bool) -> None:
    instance, env = GOLDEN[name]
    rendered = render_text(instance, env)
    path = ROOT / "tests" / "golden" / name
    if update_golden:
        path.write_text(rendered, encoding="utf-8")
    assert path.is_file(), f"{path} missing; run pytest --update-golden and review the diff"
    assert rendered == path.read_text(encoding="utf-8"), (
        f"render differs from {path.name}; if intended, run pytest --update-golden and review the diff"
    )
