"""checkov over the rendered overlays (and prod with every optional
component) and every Dockerfile passes, apart from the findings accepted in
manifests/security-suppressions.yaml, each with a reason that
manifests/README.md lists too. Runs checkov once (about ten seconds)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from manifest_checks import (
    MANIFESTS,
    REPO,
    Finding,
    Suppression,
    ToolMissing,
    all_dockerfiles,
    load_suppressions,
    missing_tool,
    run_checkov,
    unsuppressed,
    unused,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def findings(rendered: dict[str, list[dict[str, Any]]]) -> list[Finding]:
    try:
        return run_checkov(rendered, all_dockerfiles())
    except ToolMissing as e:
        missing_tool(e)
        raise


@pytest.fixture(scope="module")
def suppressions() -> list[Suppression]:
    return load_suppressions()


def _readme_section(title: str) -> str:
    text = (MANIFESTS / "README.md").read_text(encoding="utf-8")
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    assert m, f"manifests/README.md has no '## {title}' section"
    return m.group(1)


def test_the_scan_finds_real_problems(findings: list[Finding]) -> None:
    """It ran over both kinds of input: the accepted findings are there."""
    frameworks = {f.framework for f in findings}
    assert {"kubernetes", "dockerfile"} <= frameworks, frameworks


def test_nothing_fails_but_the_accepted_findings(
    findings: list[Finding], suppressions: list[Suppression]
) -> None:
    left = unsuppressed(findings, suppressions)
    assert not left, (
        "checkov findings (fix them, or accept one with a reason in security-suppressions.yaml):\n"
        + ("\n".join(map(str, left)))
    )


def test_every_suppression_is_still_needed(findings: list[Finding], suppressions: list[Suppression]) -> None:
    stale = unused(findings, suppressions)
    assert not stale, f"suppressions that match nothing any more (remove them): {stale}"


def test_every_suppression_has_a_reason_the_readme_lists(suppressions: list[Suppression]) -> None:
    section = _readme_section("Suppressions")
    assert suppressions
    for s in suppressions:
        assert len(s.reason) > 40, f"{s.check}: say why"
        assert s.check in section, f"{s.check} is not listed in manifests/README.md (Suppressions)"
    hadolint = yaml.safe_load((REPO / ".hadolint.yaml").read_text()) or {}
    rules = list(hadolint.get("ignored") or [])
    # inline ones: `# hadolint ignore=RULE` and `# checkov:skip=CHECK` in a Dockerfile
    for dockerfile in all_dockerfiles():
        text = dockerfile.read_text()
        rules += re.findall(r"#\s*hadolint ignore=([\w,]+)", text)
        rules += re.findall(r"#\s*checkov:skip=(\w+)", text)
    for rule in (r for item in rules for r in item.split(",")):
        assert rule in section, f"{rule} is not listed in manifests/README.md (Suppressions)"
