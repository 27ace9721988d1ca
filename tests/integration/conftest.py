"""Fixtures shared by the integration tests."""

from pathlib import Path

import pytest
from test_replication_support import sqlite_url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def source_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "dms.sqlite")
    return str(request.getfixturevalue("pg_url"))
