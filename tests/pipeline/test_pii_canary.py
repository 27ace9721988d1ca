"""Canary: distinctive PII planted in the source must not appear in any byte
of curated/, master/, the pipeline's artifacts or the run's log after
``ingest`` (Parquet is decompressed and searched value by value)."""

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from autoroi.config import load_config
from pipelines.run import run_local
from tests.dms_source import make_dms_source, plant_canaries

pytestmark = pytest.mark.pipeline


def _parquet_text(path: Path) -> list[str]:
    """Every value of every column as text, lower-cased."""
    table = pq.read_table(path)
    out = []
    for col in table.columns:
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            values = col
        else:
            try:
                values = pc.cast(col, pa.string())
            except pa.ArrowNotImplementedError:
                continue
        out.extend(v.lower() for v in values.to_pylist() if v is not None)
    return out


def _leaks(root: Path, needles: list[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    lowered = [n.lower() for n in needles]
    for path in root.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        data = path.read_bytes()
        haystacks = [data.decode("utf-8", errors="replace").lower()]
        if data[:4] == b"PAR1":
            haystacks.append("\n".join(_parquet_text(path)))
        hits = [n for n in lowered if any(n in h for h in haystacks)]
        if hits:
            found[str(path.relative_to(root))] = hits
    return found


def test_planted_pii_never_leaves_the_raw_zone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AUTOROI_HMAC_KEY", "c" * 40)
    url = make_dms_source(tmp_path / "dms.sqlite", sales_rows=20_000, seed=11)
    canaries = plant_canaries(url)
    cfg = load_config(
        overrides={
            "source": {"url": url},
            "lake": {"uri": str(tmp_path / "lake")},
            "kfp": {"pipeline_root": str(tmp_path / "kfp")},
        }
    )
    log = tmp_path / "kfp" / "logs" / "ingest.log"
    out = run_local("ingest", cfg, log)
    assert out["master_changed"] is True

    # the canaries did reach the raw zone, so the search below can find them
    raw = _leaks(tmp_path / "lake" / "raw", canaries)
    assert set().union(*raw.values()) == {c.lower() for c in canaries}

    lake = tmp_path / "lake"
    searched = [lake / "curated", lake / "master", tmp_path / "kfp"]
    assert all(p.exists() for p in searched)
    assert log.stat().st_size > 0
    for root in searched:
        assert _leaks(root, canaries) == {}, root
