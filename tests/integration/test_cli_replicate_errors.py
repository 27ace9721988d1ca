"""``autoroi replicate`` with bad input, through the real command line.

Each failure must: exit non-zero; say what is wrong in one line
(``autoroi: error: ...``, no traceback); never print the password; and leave the
lake exactly as it was (every file hashed before and after).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_replication_support import (
    assert_lake_equals,
    cli_env,
    error_lines,
    execute,
    free_port,
    generate,
    run_cli,
    source_snapshot,
    sqlite_url,
    tree_state,
)

PASSWORD = "S3cr3t-Pa55word"


@dataclass
class Setup:
    tmp: Path
    url: str  # a good SQLite source
    lake: Path  # replicated once, successfully
    pg: Any = None


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    url = sqlite_url(tmp_path / "dms.sqlite")
    generate(url, seed=2, sales_rows=3_000)
    lake = tmp_path / "lake"
    proc = run_cli("replicate", "--source-url", url, "--lake", str(lake))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return Setup(tmp_path, url, lake)


def _check_failure(
    proc: Any, expected: list[str], lake: Path, before: dict[str, Any], secrets: list[str]
) -> str:
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-2000:]
    lines = error_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr[-3000:]
    assert "Traceback" not in out, out[-3000:]
    message = lines[0]
    for word in expected:
        assert word.lower() in message.lower(), (word, message)
    for secret in secrets:
        assert secret not in out, f"secret leaked: {out[-2000:]}"
    assert tree_state(lake, content=True) == before, "the lake changed"
    return message


# Each case: (id, builder(setup) -> (args, env extras), words the message must hold)
Case = Callable[[Setup], tuple[list[str], dict[str, str]]]


def _unreachable(s: Setup) -> tuple[list[str], dict[str, str]]:
    port = free_port()  # nothing listens there
    return ["--source-url", f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/dms"], {}


def _unknown_table(s: Setup) -> tuple[list[str], dict[str, str]]:
    return ["--source-url", s.url, "--table", "nosuch"], {}


def _malformed(s: Setup) -> tuple[list[str], dict[str, str]]:
    return ["--source-url", "not a url"], {}


def _unsupported(s: Setup) -> tuple[list[str], dict[str, str]]:
    return ["--source-url", f"oracle://scott:{PASSWORD}@db.example.com:1521/orcl"], {}


def _missing_sqlite(s: Setup) -> tuple[list[str], dict[str, str]]:
    return ["--source-url", sqlite_url(s.tmp / "missing.sqlite")], {}


def _missing_sqlite_folder(s: Setup) -> tuple[list[str], dict[str, str]]:
    return ["--source-url", sqlite_url(s.tmp / "nofolder" / "dms.sqlite")], {}


def _bad_config_value(s: Setup) -> tuple[list[str], dict[str, str]]:
    return ["--source-url", s.url], {"AUTOROI_REPLICATION__FILE_ROWS": "5"}


CASES: list[tuple[str, Case, list[str]]] = [
    ("unreachable-database", _unreachable, ["connect", "refused", "127.0.0.1"]),
    ("unknown-table", _unknown_table, ["nosuch"]),
    ("malformed-url", _malformed, ["malformed", "url"]),
    ("unsupported-scheme", _unsupported, ["unsupported", "oracle"]),
    ("missing-sqlite-file", _missing_sqlite, ["missing.sqlite"]),
    ("missing-sqlite-folder", _missing_sqlite_folder, ["dms.sqlite"]),
    ("bad-config-value", _bad_config_value, ["file_rows"]),
]


@pytest.mark.parametrize(("build", "expected"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_fails_cleanly_and_leaves_the_lake_alone(
    setup: Setup, build: Case, expected: list[str]
) -> None:
    before = tree_state(setup.lake, content=True)
    args, env = build(setup)
    proc = run_cli("replicate", *args, "--lake", str(setup.lake), env=cli_env(**env))
    _check_failure(proc, expected, setup.lake, before, [PASSWORD])


def test_missing_sqlite_database_is_not_created(setup: Setup) -> None:
    """A typo in the path must not silently replicate an empty database (and
    leave an empty file behind)."""
    missing = setup.tmp / "missing.sqlite"
    proc = run_cli("replicate", "--source-url", sqlite_url(missing), "--lake", str(setup.lake))
    assert proc.returncode != 0
    assert not missing.exists()


@pytest.mark.parametrize("kind", ["empty-file", "in-memory"])
def test_a_source_without_tables_is_an_error(setup: Setup, kind: str) -> None:
    """An existing but empty database (a wrong path, an in-memory URL) holds
    nothing to replicate: saying "done" with zero tables hides the mistake."""
    if kind == "empty-file":
        empty = setup.tmp / "empty.sqlite"
        execute(sqlite_url(empty), "CREATE TABLE t (a INTEGER)", "DROP TABLE t")
        assert empty.is_file()
        url = sqlite_url(empty)
    else:
        url = "sqlite:///:memory:"
    before = tree_state(setup.lake, content=True)
    proc = run_cli("replicate", "--source-url", url, "--lake", str(setup.lake))
    _check_failure(proc, ["no tables"], setup.lake, before, [])


def test_unwritable_lake(setup: Setup) -> None:
    """A lake path below a regular file cannot be created, even by root."""
    afile = setup.tmp / "afile"
    afile.write_text("not a folder\n")
    bad_lake = afile / "lake"
    before = tree_state(setup.lake, content=True)
    proc = run_cli("replicate", "--source-url", setup.url, "--lake", str(bad_lake))
    message = _check_failure(proc, ["not writable", str(bad_lake)], setup.lake, before, [])
    assert "lake" in message
    assert afile.read_text() == "not a folder\n"


@pytest.mark.postgres
def test_wrong_password(setup: Setup, postgres_server: Any) -> None:
    before = tree_state(setup.lake, content=True)
    url = postgres_server.url().replace(postgres_server.password, PASSWORD)
    proc = run_cli("replicate", "--source-url", url, "--lake", str(setup.lake))
    _check_failure(proc, ["authentication failed"], setup.lake, before, [PASSWORD, postgres_server.password])


@pytest.mark.postgres
def test_password_from_the_environment(pg_url: str, postgres_server: Any, tmp_path: Path) -> None:
    generate(pg_url, seed=2, sales_rows=3_000)
    no_pw = pg_url.replace(f":{postgres_server.password}@", "@")
    assert postgres_server.password not in no_pw
    lake = tmp_path / "lake"
    secret = postgres_server.password

    # without it, a clear refusal that names where the password should come from
    proc = run_cli("replicate", "--source-url", no_pw, "--lake", str(lake))
    _check_failure(proc, ["password"], lake, {}, [secret])
    assert "AUTOROI_SOURCE_PASSWORD" in error_lines(proc.stderr)[0] or "password_env" in proc.stderr

    # with it, the run works and never shows it
    proc = run_cli(
        "replicate", "--source-url", no_pw, "--lake", str(lake), env=cli_env(AUTOROI_SOURCE_PASSWORD=secret)
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert secret not in proc.stdout + proc.stderr
    assert_lake_equals(source_snapshot(pg_url), lake)

    # config show: masked, whether the password sits in the environment or in the URL
    proc = run_cli("config", "show", "--source-url", no_pw, env=cli_env(AUTOROI_SOURCE_PASSWORD=secret))
    assert proc.returncode == 0, proc.stderr
    assert secret not in proc.stdout + proc.stderr
    assert "*** (set)" in proc.stdout
    proc = run_cli("config", "show", env=cli_env(AUTOROI_SOURCE__URL=pg_url))
    assert proc.returncode == 0, proc.stderr
    assert secret not in proc.stdout + proc.stderr
    assert "***" in proc.stdout
    proc = run_cli("config", "show", "--source-url", pg_url)
    assert proc.returncode == 0, proc.stderr
    assert secret not in proc.stdout + proc.stderr
