from pathlib import Path

import pytest

from autoroi.config import ParamRange, config_from_json, load_config
from autoroi.errors import ConfigError


def test_training_defaults():
    t = load_config().training
    assert t.max_trials >= 1 and t.max_seconds > 0 and t.folds >= 3
    assert t.gates.must_beat == ["seasonal_naive"] and 0 < t.gates.wape_max <= 1
    assert isinstance(t.search_space["learning_rate"], ParamRange)
    assert t.search_space["layers"] == [1, 2, 3] and isinstance(t.search_space["layers"][0], int)


def test_training_from_file_env_and_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    f = tmp_path / "c.yaml"
    f.write_text(
        "training:\n  max_trials: 2\n  search_space:\n    units: [8, 16]\n"
        "    learning_rate: {min: 0.001, max: 0.01, sampling: log}\n"
    )
    monkeypatch.setenv("AUTOROI_TRAINING__GATES__WAPE_MAX", "0.35")
    cfg = load_config(f)
    assert cfg.training.max_trials == 2 and cfg.training.gates.wape_max == 0.35
    assert set(cfg.training.search_space) == {"units", "learning_rate"}
    assert config_from_json(cfg.model_dump_json()).training == cfg.training


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("training:\n  search_space:\n    wisdom: [1, 2]\n", "training.search_space"),
        ("training:\n  search_space:\n    units: []\n", "training.search_space"),
        ("training:\n  search_space:\n    learning_rate: {min: 0.1, max: 0.01}\n", "training.search_space"),
        ("training:\n  folds: 2\n", "training.folds"),
        ("training:\n  gates:\n    production_tolerance: -0.1\n", "training.gates.production_tolerance"),
    ],
)
def test_invalid_training_config_names_the_field(tmp_path: Path, text: str, where: str):
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=where.replace(".", r"\.")):
        load_config(f)
