"""Component tier: the component's Python function with real artifacts."""

import json
from pathlib import Path

import pyarrow.dataset as ds
from kfp.dsl import Metrics

from autoroi.config import load_config
from components.replicate.component import build
from tests.sqlite_source import make_source


def test_replicate_component_writes_lake_and_metrics(tmp_path: Path):
    url = make_source(tmp_path / "src.db", rows=300)
    lake = tmp_path / "lake"
    cfg = load_config()
    op = build("example.org/components:test")
    metrics = Metrics(name="metrics", uri=str(tmp_path / "metrics"), metadata={})

    out = op.python_func(
        source_url=url, lake_uri=str(lake), config_json=cfg.model_dump_json(), metrics=metrics
    )

    report = json.loads(out)
    assert [t["table"] for t in report["tables"]] == ["items"]
    assert report["tables"][0]["status"] == "full_load"
    assert metrics.metadata["items.rows"] == 300
    assert metrics.metadata["items.inserted"] == 300
    assert metrics.metadata["duration_seconds"] > 0
    assert ds.dataset(lake / "raw" / "items", format="parquet").count_rows() == 300

    again = json.loads(
        op.python_func(
            source_url=url,
            lake_uri=str(lake),
            config_json=cfg.model_dump_json(),
            metrics=Metrics(name="m", uri=str(tmp_path / "m2"), metadata={}),
        )
    )
    assert again["tables"][0]["status"] == "unchanged"


def test_component_image_comes_from_config():
    op = build("registry.example.com/autoroi/components:abc123")
    assert (
        op.component_spec.implementation.container.image == "registry.example.com/autoroi/components:abc123"
    )
