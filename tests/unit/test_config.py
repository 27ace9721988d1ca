from pathlib import Path

import pytest

from autoroi.cli.config_cmd import masked
from autoroi.config import config_from_json, load_config, read_secret
from autoroi.errors import ConfigError


def test_defaults_are_embedded():
    cfg = load_config()
    assert cfg.source.url.startswith("sqlite:///")
    assert cfg.lake.uri == "var/lake"


def test_yaml_then_env_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    f = tmp_path / "c.yaml"
    f.write_text("lake:\n  uri: /from/file\nreplication:\n  file_rows: 5000\n  batch_rows: 2000\n")
    assert load_config(f).lake.uri == "/from/file"
    monkeypatch.setenv("AUTOROI_LAKE__URI", "/from/env")
    monkeypatch.setenv("AUTOROI_REPLICATION__FILE_ROWS", "7000")
    cfg = load_config(f)
    assert cfg.lake.uri == "/from/env"
    assert cfg.replication.file_rows == 7000
    assert cfg.replication.batch_rows == 2000  # file value kept where env is silent
    cfg = load_config(f, {"lake": {"uri": "/from/flag"}})
    assert cfg.lake.uri == "/from/flag"
    assert cfg.replication.file_rows == 7000


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("replication:\n  file_rows: -1\n", "replication.file_rows"),
        ("replication:\n  compression: brotli9\n", "replication.compression"),
        ("lake:\n  nosuch: 1\n", "lake.nosuch"),
        ("- a\n- b\n", "mapping"),
    ],
)
def test_invalid_config_names_the_field(tmp_path: Path, text: str, names: str):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=names.replace(".", r"\.")):
        load_config(f)


def test_missing_and_broken_files(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml")
    (tmp_path / "b.yaml").write_text("lake: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "b.yaml")


def test_json_round_trip_is_what_pipelines_carry():
    cfg = load_config(overrides={"replication": {"file_rows": 1234}})
    again = config_from_json(cfg.model_dump_json())
    assert again == cfg
    with pytest.raises(ConfigError):
        config_from_json('{"replication": {"file_rows": "many"}}')


def test_secret_from_file_wins_and_show_masks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PW_VAR", "from-env")
    assert read_secret("PW_VAR") == "from-env"
    secret = tmp_path / "password"
    secret.write_text("from-file\n")
    assert read_secret("PW_VAR", secret) == "from-file"
    with pytest.raises(ConfigError, match="cannot be read"):
        read_secret("PW_VAR", tmp_path / "absent")

    cfg = load_config(overrides={"source": {"url": "postgresql://u:hunter2@db/x", "password_env": "PW_VAR"}})
    doc = masked(cfg)
    assert "hunter2" not in str(doc)
    assert doc["source"]["password"] == "*** (in URL)"
    cfg = load_config(overrides={"source": {"url": "postgresql://u@db/x", "password_env": "PW_VAR"}})
    doc = masked(cfg)
    assert "from-env" not in str(doc)
    assert doc["source"]["password"] == "*** (set)"


def test_env_is_applied_once_at_the_edge(monkeypatch: pytest.MonkeyPatch):
    cfg = load_config(overrides={"lake": {"uri": "/edge"}})
    monkeypatch.setenv("AUTOROI_LAKE__URI", "/later-env")
    monkeypatch.setenv("AUTOROI_SOURCE_PASSWORD", "not-config")  # a secret, not a setting
    assert config_from_json(cfg.model_dump_json()).lake.uri == "/edge"
    assert load_config().lake.uri == "/later-env"


def test_env_values_are_typed_and_validated(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AUTOROI_SOURCE__TABLES", "[sales, dealers]")
    assert load_config().source.tables == ["sales", "dealers"]
    monkeypatch.setenv("AUTOROI_REPLICATION__FILE_ROWS", "lots")
    with pytest.raises(ConfigError, match="replication.file_rows"):
        load_config()
