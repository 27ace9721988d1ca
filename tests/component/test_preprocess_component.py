"""Component tier: ``preprocess`` with real artifacts on a small simulated source."""

import json
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from kfp.dsl import Dataset, Metrics

from autoroi.config import load_config
from autoroi.master import COLUMNS
from autoroi.master.io import arrow_schema
from autoroi.master.sample import curated_like
from autoroi.source.simulator import simulate
from components.preprocess.component import build


@pytest.fixture(scope="module")
def curated_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A curated artifact: ``<table>/part-00000.parquet`` per table and ``_report.json``."""
    root = tmp_path_factory.mktemp("curated")
    for name, table in curated_like(simulate(3, sales_rows=20_000, scale="small").tables).items():
        (root / name).mkdir()
        pq.write_table(table, root / name / "part-00000.parquet")
    (root / "_report.json").write_text("{}")
    return root


def _run(op, cfg_json: str, curated: Path, out: Path) -> tuple[dict, Metrics]:
    metrics = Metrics(name="metrics", uri=str(out / "metrics"), metadata={})
    result = op.python_func(
        config_json=cfg_json,
        curated=Dataset(name="curated", uri=str(curated), metadata={}),
        master=Dataset(name="master", uri=str(out / "master"), metadata={}),
        metrics=metrics,
    )
    return json.loads(result), metrics


def test_preprocess_writes_master_table_report_and_metrics(spark, curated_dir: Path, tmp_path: Path):
    cfg = load_config()
    op = build("example.org/components:test")

    report, metrics = _run(op, cfg.model_dump_json(), curated_dir, tmp_path / "a")

    master = tmp_path / "a" / "master"
    assert sorted(p.name for p in master.iterdir()) == ["_report.json", "part-00000.parquet"]
    table = pq.read_table(master / "part-00000.parquet")
    assert table.column_names == list(COLUMNS)
    assert table.schema.equals(arrow_schema())  # the declared schema, not Spark's nullability
    assert table.num_rows == report["rows"] > 0
    assert pc.min(table["dealer_count"]).as_py() >= cfg.master.k  # k-anonymous, every row
    assert pc.sum(table["units"]).as_py() == report["units"]
    on_disk = json.loads((master / "_report.json").read_text())
    assert on_disk["k"] == cfg.master.k and on_disk["rows"] == report["rows"]
    # the small world (72 dealers, 20,000 sales) needs coarse cells and suppression
    assert report["merged_rows"] > 0 and report["suppressed_fine_cells"] > 0
    assert report["units"] + report["suppressed_units"] == report["sales"] == 20_000
    assert set(pc.unique(table["cell_level"]).to_pylist()) >= {"region_model", "super_region_model"}
    m = metrics.metadata
    assert m["rows"] == report["rows"] and m["suppressed_units"] == report["suppressed_units"]
    assert m["merged_cells"] == report["merged_fine_cells"] and m["duration_seconds"] > 0

    # the same input gives the same bytes
    _run(op, cfg.model_dump_json(), curated_dir, tmp_path / "b")
    first = (master / "part-00000.parquet").read_bytes()
    assert (tmp_path / "b" / "master" / "part-00000.parquet").read_bytes() == first


def test_component_image_comes_from_config():
    op = build("registry.example.com/autoroi/components:abc123")
    assert (
        op.component_spec.implementation.container.image == "registry.example.com/autoroi/components:abc123"
    )
