"""publish_ingest: curated tables and the master version land together;
unchanged inputs change nothing."""

from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads

from autoroi.config import load_config
from autoroi.lake.master import MasterStore
from autoroi.lake.storage import open_lake
from autoroi.lake.tables import TableStore
from autoroi.release import code_version, publish_ingest
from tests.master_tables import master_table


def _curated(n: int = 5) -> dict[str, pa.Table]:
    return {
        "regions": pa.table({"region_id": [1, 2], "name": ["North", "South"]}),
        "sales": pa.table({"sale_id": list(range(n)), "dealer_id": ["ab" * 16] * n}),
    }


def test_publish_curated_and_master_then_nothing_on_rerun(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("AUTOROI_GIT_SHA", "0123456789abcdef0123")
    lake = open_lake(str(tmp_path / "lake"))
    cfg = load_config()

    first = publish_ingest(lake, cfg, _curated(), master_table(), {"anonymity": {"suppressed_rows": 3}})
    assert first.changed and first.curated_changed == ["regions", "sales"]
    assert pads.dataset(str(tmp_path / "lake" / "curated" / "sales"), format="parquet").count_rows() == 5
    manifest = MasterStore(lake).manifest(first.version)
    assert manifest["anonymity"] == {"suppressed_rows": 3}
    assert manifest["curated_rows"] == {"regions": 2, "sales": 5}
    assert manifest["code_version"] == "0.1.0+0123456789ab" == code_version()
    assert manifest["k"] == cfg.master.k

    sales_version = TableStore(lake, "curated", "sales").manifest().version
    again = publish_ingest(lake, cfg, _curated(), master_table(), {})
    assert (again.changed, again.version, again.curated_changed) == (False, first.version, [])
    assert TableStore(lake, "curated", "sales").manifest().version == sales_version

    more = publish_ingest(lake, cfg, _curated(7), master_table(units=20), {})
    assert more.changed and more.curated_changed == ["sales"] and more.previous == first.version
    assert pads.dataset(str(tmp_path / "lake" / "curated" / "sales"), format="parquet").count_rows() == 7
