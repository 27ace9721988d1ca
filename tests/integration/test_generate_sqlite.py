"""generate and mutate against a real SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC
from itertools import pairwise
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from autoroi.errors import ConfigError, SourceError
from autoroi.source import schema
from autoroi.source.db import connect_engine
from autoroi.source.generate import GenerateReport, _load_generic, generate_source
from autoroi.source.mutate import DELIVERY_COLUMN, MutateReport, mutate_source
from autoroi.source.simulator import TRUTH_SCHEMA, simulate

SEED = 5
ROWS = 20_000


def _engine(path: Path) -> Engine:
    return connect_engine(make_url(f"sqlite:///{path}"))


def _counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t: conn.execute(sa.text(f'SELECT count(*) FROM "{t}"')).scalar_one() for t in schema.TABLE_ORDER
        }


def _dump(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    out = {}
    with engine.connect() as conn:
        for t in schema.TABLE_ORDER:
            pk = schema.metadata.tables[t].primary_key.columns.keys()[0]
            out[t] = [tuple(r) for r in conn.exec_driver_sql(f'SELECT * FROM "{t}" ORDER BY "{pk}"').all()]
    return out


@pytest.fixture
def generated(tmp_path: Path) -> Iterator[tuple[Engine, GenerateReport]]:
    engine = _engine(tmp_path / "dms.sqlite")
    seen: list[tuple[str, int]] = []
    report = generate_source(
        engine,
        seed=SEED,
        sales_rows=ROWS,
        truth_path=tmp_path / "out" / "truth.parquet",
        progress=lambda t, n: seen.append((t, n)),
    )
    assert ("sales", ROWS) in seen
    yield engine, report
    engine.dispose()


def test_generate_loads_every_table_and_writes_the_truth(generated: tuple[Engine, GenerateReport]) -> None:
    engine, report = generated
    assert report.rows["sales"] == ROWS
    assert report.backend == "sqlite"
    assert _counts(engine) == report.rows
    assert set(report.rows) == set(schema.TABLE_ORDER)
    assert report.truth_path is not None and report.truth_path.exists()
    truth = pq.read_table(report.truth_path)
    assert truth.schema.equals(TRUTH_SCHEMA)
    assert truth.num_rows == report.truth_rows > 0
    assert [p.name for p in report.truth_path.parent.iterdir()] == ["truth.parquet"]  # no temp file left
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        indexes = {i["name"] for i in sa.inspect(conn).get_indexes("sales")}
    assert {"ix_sales_updated_at", "ix_sales_sale_date"} <= indexes


def test_values_read_back_as_the_simulator_made_them(generated: tuple[Engine, GenerateReport]) -> None:
    engine, _ = generated
    expected = simulate(SEED, sales_rows=ROWS).tables["sales"].slice(0, 50).to_pylist()
    s = schema.sales
    with engine.connect() as conn:
        rows = [r._asdict() for r in conn.execute(sa.select(s).order_by(s.c.sale_id).limit(50))]
    for got, want in zip(rows, expected, strict=True):
        for col in ("created_at", "updated_at"):
            assert got[col].replace(tzinfo=UTC) == want[col]  # SQLite keeps UTC without a zone
        for col in ("sale_price", "incentive_amount", "trade_in_value", "apr"):
            assert (got[col] is None) == (want[col] is None)
            if got[col] is not None:
                assert float(got[col]) == pytest.approx(want[col])
        for col in ("sale_id", "vin", "sale_date", "program_id", "financing_type", "term_months", "is_fleet"):
            assert got[col] == want[col], col


def test_generate_replaces_what_was_there(generated: tuple[Engine, GenerateReport], tmp_path: Path) -> None:
    engine, _ = generated
    mutate_source(engine, seed=1)
    report = generate_source(engine, seed=SEED + 1, sales_rows=3_000)
    assert _counts(engine) == report.rows
    with engine.connect() as conn:
        assert DELIVERY_COLUMN not in {c["name"] for c in sa.inspect(conn).get_columns("sales")}


def test_a_failed_load_leaves_the_previous_contents(generated: tuple[Engine, GenerateReport]) -> None:
    engine, report = generated

    def interrupt(table: str, rows: int) -> None:
        if table == "sales":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_source(engine, seed=SEED + 2, sales_rows=ROWS, progress=interrupt)
    assert _counts(engine) == report.rows
    with engine.connect() as conn:
        first = conn.exec_driver_sql("SELECT vin FROM sales WHERE sale_id = 1").scalar()
    assert first == simulate(SEED, sales_rows=ROWS).tables["sales"].column("vin")[0].as_py()


def test_the_generic_loader_writes_the_same_rows(tmp_path: Path) -> None:
    """The MySQL/MariaDB path (typed SQLAlchemy batches), exercised on SQLite."""
    fast, generic = _engine(tmp_path / "fast.sqlite"), _engine(tmp_path / "generic.sqlite")
    generate_source(fast, seed=SEED, sales_rows=2_000)
    _load_generic(generic, simulate(SEED, sales_rows=2_000), None)
    assert _dump(generic) == _dump(fast)
    fast.dispose()
    generic.dispose()


def test_generate_rejects_bad_arguments_before_touching_the_database(tmp_path: Path) -> None:
    engine = _engine(tmp_path / "empty.sqlite")
    with pytest.raises(ConfigError, match="unknown scale"):
        generate_source(engine, seed=1, scale="gigantic")
    with pytest.raises(ConfigError, match="at least 1"):
        generate_source(engine, seed=1, sales_rows=0)
    with engine.connect() as conn:
        assert sa.inspect(conn).get_table_names() == []


def test_mutate_without_generated_data_is_a_source_error(tmp_path: Path) -> None:
    engine = _engine(tmp_path / "empty.sqlite")
    with pytest.raises(SourceError, match="generate"):
        mutate_source(engine, seed=1)
    with pytest.raises(ConfigError, match="batches"):
        mutate_source(engine, seed=1, batches=0)


def _sales_columns(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [c["name"] for c in sa.inspect(conn).get_columns("sales")]


def _check_batch(engine: Engine, before: dict[str, int], report: MutateReport) -> None:
    """The counts a batch reports are the ones the database shows."""
    (b,) = report.batches
    after = _counts(engine)
    for table in schema.TABLE_ORDER:
        grown = b.inserted.get(table, 0) - b.deleted.get(table, 0)
        assert after[table] == before[table] + grown, table
    # a week of the generated world, continued: about its expected sales
    assert b.expected_sales > 0
    assert abs(b.inserted["sales"] - b.expected_sales) < 6 * b.expected_sales**0.5 + 0.1 * b.expected_sales
    assert b.deleted["sales"] >= 1 and b.updated["sales"] >= 1 and b.updated["customers"] >= 1
    assert b.inserted["incentive_programs"] in (0, 1)  # programs start as often as in the history
    assert (b.inserted["program_eligibility"] >= 1) == (b.inserted["incentive_programs"] == 1)
    clock = b.clock.replace(tzinfo=None)  # SQLite returns naive UTC
    s, c = schema.sales, schema.customers
    with engine.connect() as conn:
        corrected = conn.execute(
            sa.select(sa.func.count()).where(s.c.updated_at == clock, s.c.created_at < s.c.updated_at)
        ).scalar_one()
        assert corrected == b.updated["sales"]
        touched = conn.execute(
            sa.select(sa.func.count()).where(c.c.updated_at == clock, c.c.created_at < c.c.updated_at)
        ).scalar_one()
        assert touched == b.updated["customers"]
        delivered = conn.exec_driver_sql(f"SELECT count({DELIVERY_COLUMN}) FROM sales").scalar()
        assert delivered is not None and delivered >= b.inserted["sales"]
        latest = conn.execute(sa.select(sa.func.max(s.c.updated_at))).scalar()
        assert latest == clock
        orphans = conn.exec_driver_sql(
            "SELECT count(*) FROM sales s LEFT JOIN customers c ON c.customer_id = s.customer_id"
            " WHERE c.customer_id IS NULL"
        ).scalar()
        assert orphans == 0
        vins = conn.exec_driver_sql("SELECT count(DISTINCT vin) = count(*) FROM sales").scalar()
        assert vins == 1


def test_mutate_batches_are_counted_migrated_once_and_deterministic(tmp_path: Path) -> None:
    one = _engine(tmp_path / "one.sqlite")
    steps = _engine(tmp_path / "steps.sqlite")
    for engine in (one, steps):
        generate_source(engine, seed=SEED, sales_rows=ROWS)
    assert DELIVERY_COLUMN not in _sales_columns(one)

    # three batches in one call ...
    all_at_once = mutate_source(one, seed=9, batches=3)
    assert [b.added_columns for b in all_at_once.batches] == [[f"sales.{DELIVERY_COLUMN}"], [], []]
    clocks = [b.clock for b in all_at_once.batches]
    assert all((b - a).days == 7 for a, b in pairwise(clocks))
    assert _sales_columns(one).count(DELIVERY_COLUMN) == 1

    # ... equal three calls of one batch, each checked against the database
    for i in range(3):
        before = _counts(steps)
        report = mutate_source(steps, seed=9, batches=1)
        assert report.batches[0].added_columns == ([f"sales.{DELIVERY_COLUMN}"] if i == 0 else [])
        assert report.batches[0].clock == clocks[i]
        _check_batch(steps, before, report)
    assert _sales_columns(steps).count(DELIVERY_COLUMN) == 1
    assert _dump(one) == _dump(steps)

    # new sales get a delivery date, old ones do not; keys keep increasing
    with one.connect() as conn:
        old_max = ROWS
        nulls_new = conn.exec_driver_sql(
            f"SELECT count(*) FROM sales WHERE sale_id > {old_max} AND {DELIVERY_COLUMN} IS NULL"
        ).scalar()
        filled_old = conn.exec_driver_sql(
            f"SELECT count(*) FROM sales WHERE sale_id <= {old_max} AND {DELIVERY_COLUMN} IS NOT NULL"
        ).scalar()
        assert nulls_new == 0 and filled_old == 0
        bad_order = conn.exec_driver_sql(
            f"SELECT count(*) FROM sales a JOIN sales b ON b.sale_id = a.sale_id + 1"
            f" WHERE a.sale_id >= {old_max} AND b.sale_date < a.sale_date"
        ).scalar()
        assert bad_order == 0

    # a different seed takes a different path
    other = _engine(tmp_path / "other.sqlite")
    generate_source(other, seed=SEED, sales_rows=ROWS)
    mutate_source(other, seed=10, batches=1)
    with other.connect() as conn:
        other_new = conn.exec_driver_sql(f"SELECT * FROM sales WHERE sale_id > {ROWS} ORDER BY sale_id").all()
    with one.connect() as conn:
        first_new = conn.exec_driver_sql(
            f"SELECT * FROM sales WHERE sale_id > {ROWS} ORDER BY sale_id LIMIT {len(other_new)}"
        ).all()
    assert other_new != first_new
    for engine in (one, steps, other):
        engine.dispose()


def test_a_shock_is_recorded_and_changes_the_world_from_its_batch_on(tmp_path: Path) -> None:
    from autoroi.replication.source import SourceReader
    from autoroi.source.continuation import NEW_MODEL, read_record

    engine = _engine(tmp_path / "shock.sqlite")
    generate_source(engine, seed=SEED, sales_rows=ROWS)
    report = mutate_source(engine, seed=4, batches=2, shock="new_model")
    first, second = report.batches
    assert first.shock is not None and NEW_MODEL[0] in first.shock and second.shock is None
    assert first.inserted["vehicle_models"] == 1 and "vehicle_models" not in second.inserted
    with engine.connect() as conn:
        record = read_record(conn)
        (shock,) = record.shocks
        assert (record.seed, record.sales_rows, shock.kind) == (SEED, ROWS, "new_model")
        model_id = conn.execute(
            sa.select(schema.vehicle_models.c.model_id).where(schema.vehicle_models.c.name == NEW_MODEL[0])
        ).scalar_one()
        sold = conn.execute(
            sa.select(sa.func.count()).where(schema.sales.c.model_id == model_id)
        ).scalar_one()
        assert sold > 0
    # the simulator's record is never replicated
    with SourceReader(engine) as reader:
        names = reader.table_names()
    assert schema.simulation.name not in names and set(schema.TABLE_ORDER) <= set(names)
    with pytest.raises(ConfigError, match="shock"):
        mutate_source(engine, seed=4, shock="meteor")
    engine.dispose()


def test_mutate_needs_the_simulator_record(tmp_path: Path) -> None:
    engine = _engine(tmp_path / "old.sqlite")
    generate_source(engine, seed=SEED, sales_rows=ROWS)
    with engine.begin() as conn:
        schema.simulation.drop(conn)
    with pytest.raises(SourceError, match="autoroi generate"):
        mutate_source(engine, seed=1)
    engine.dispose()
