"""Fixtures of the manifest, container and CI checks: every render happens
once per session (``kubectl kustomize`` takes a second; checkov ten).
Helpers live in manifest_checks.py (a unique module name: every test folder
has a conftest)."""

from __future__ import annotations

from typing import Any

import pytest
from manifest_checks import (
    KSERVE_CRD,
    OPTIONAL_COMPONENTS,
    OVERLAYS,
    ToolMissing,
    crd_schema,
    missing_tool,
    render,
)


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict[str, Any]]]:
    try:
        out = {o: render(o) for o in OVERLAYS}
        out["prod-all-components"] = render("prod", OPTIONAL_COMPONENTS)
    except ToolMissing as e:
        missing_tool(e)
        raise
    return out


@pytest.fixture(scope="session")
def isvc_schema() -> dict[str, Any]:
    return crd_schema(KSERVE_CRD, "v1beta1")
