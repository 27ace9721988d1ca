"""A realistic change stream against the source database.

Replication has to cope with what operational systems do between two runs:
new rows, late corrections, deletions, a column added by a schema migration.
Each batch is one simulated week and one transaction: new sales (and new
customers), corrections and cancellations of recent sales, contact changes of
customers and dealers, a new incentive program with its eligibility. Every
changed row gets an ``updated_at`` after everything already in the database, as
the watermark-based replication expects.

New sales follow the generated world's causal model past its simulated weeks
(``autoroi.source.continuation``); ``shock`` changes that world from the next
batch on, as markets sometimes do, so the monitoring loop can be tested.

A batch is deterministic for (seed, database state): its random stream is
seeded with the seed and the current sales high-water mark, so two copies of
one database mutated with one seed end identical.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from time import perf_counter
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from autoroi.errors import ConfigError, SourceError
from autoroi.source import schema
from autoroi.source.continuation import (
    NEW_MODEL,
    SHOCKS,
    Shock,
    SimulationRecord,
    add_shock,
    choose_shock,
    draw_sales,
    read_record,
    world_for,
)
from autoroi.source.db import describe_db_error
from autoroi.source.simulator import (
    EPOCH,
    INCENTIVE_TYPES,
    INCENTIVES,
    N_WEEKS,
    PROGRAM_WEEKS,
    PROGRAMS_PER_WEEK,
    PULL_FORWARD_WEEKS,
    REGIONS,
    SEGMENT_MARGIN,
    SEGMENTS,
    START_DAY,
    US_PER_HOUR,
    Pools,
    ascii_slug,
    build_pools,
    check_seed,
    deal_terms,
    describe_program,
    make_addresses,
    make_people,
    make_phones,
    make_vins,
    program_code,
    program_scope,
    stream,
)
from autoroi.source.truth import TruthWorld

log = logging.getLogger(__name__)

UPDATE_SHARE = 0.004  # corrections
DELETE_SHARE = 0.001  # cancellations
CUSTOMER_UPDATE_SHARE = 0.0005
NEW_CUSTOMER_SHARE = 0.3  # of new sales, bought by a customer not yet on file
RECENT_DAYS = 56  # corrections touch sales of the last eight weeks
CANCEL_DAYS = 28
DELIVERY_COLUMN = "delivery_date"
MAX_BATCHES = 1_000
_IN_CHUNK = 500


@dataclass
class BatchReport:
    batch: int
    clock: datetime  # the simulated time of the batch; every row it changed has updated_at <= clock
    inserted: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    deleted: dict[str, int] = field(default_factory=dict)
    added_columns: list[str] = field(default_factory=list)
    expected_sales: float = 0.0  # the causal model's expectation of the new sales
    shock: str | None = None  # the regime change this batch started, described


@dataclass
class MutateReport:
    batches: list[BatchReport]
    seconds: float

    def total(self, kind: str) -> dict[str, int]:
        """Summed ``inserted``, ``updated`` or ``deleted`` counts per table."""
        out: dict[str, int] = {}
        for b in self.batches:
            for table, n in getattr(b, kind).items():
                out[table] = out.get(table, 0) + n
        return out


def mutate_source(engine: Engine, *, seed: int, batches: int = 1, shock: str | None = None) -> MutateReport:
    """Apply ``batches`` weeks of changes, each in its own transaction;
    ``shock`` (one of ``continuation.SHOCKS``) starts with the first."""
    seed = check_seed(seed)
    if isinstance(batches, bool) or not isinstance(batches, int) or not 1 <= batches <= MAX_BATCHES:
        raise ConfigError(f"batches must be an integer from 1 to {MAX_BATCHES}, got {batches!r}")
    if shock is not None and shock not in SHOCKS:
        raise ConfigError(f"shock: unknown {shock!r}; known: {', '.join(SHOCKS)}")
    t0 = perf_counter()
    pools = build_pools(seed)
    worlds: dict[SimulationRecord, TruthWorld] = {}
    reports = []
    dbapi_error: type[BaseException] = getattr(
        getattr(engine.dialect, "loaded_dbapi", None), "Error", sa.exc.DBAPIError
    )
    for number in range(1, batches + 1):
        try:
            with engine.connect() as conn:
                if conn.dialect.name == "sqlite":
                    # reads and writes in one transaction; take the write lock up front
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                report = _apply_batch(conn, seed, number, pools, worlds, shock if number == 1 else None)
                conn.commit()
        except (sa.exc.SQLAlchemyError, dbapi_error) as e:
            raise SourceError(f"mutate batch {number} failed: {describe_db_error(e)}") from e
        log.info(
            "batch %d at %s: inserted %s, updated %s, deleted %s%s",
            number,
            report.clock.isoformat(),
            report.inserted,
            report.updated,
            report.deleted,
            f", added {report.added_columns}" if report.added_columns else "",
        )
        reports.append(report)
    return MutateReport(batches=reports, seconds=round(perf_counter() - t0, 3))


# --------------------------------------------------------------------------- helpers


def _utc(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise SourceError(f"unexpected timestamp value {type(value).__name__}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _num(x: Any) -> float | None:
    """A float from Decimal/float/int, ``None`` for SQL NULL (which pandas may hold as NaN)."""
    if x is None:
        return None
    value = float(x)
    return None if np.isnan(value) else value


def _nullable(values: np.ndarray, mask: np.ndarray) -> list[Any]:
    out = values.astype(object)
    out[mask] = None
    return out.tolist()


def _typed(table: sa.Table, *extra: sa.ColumnClause[Any]) -> sa.TableClause:
    """A lightweight table with the schema's types, plus columns added later."""
    return sa.table(table.name, *[sa.column(c.name, c.type) for c in table.columns], *extra)


class _Writer:
    """Set-based writes that work on every backend."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.pg = conn.dialect.name == "postgresql"

    def ts(self, us: int) -> datetime:
        value = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(us))
        # DATETIME in MySQL and SQLite has no zone: hand them naive UTC
        return value if self.pg else value.replace(tzinfo=None)

    def insert(self, table: sa.TableClause, rows: list[dict[str, Any]]) -> int:
        if rows:
            self.conn.execute(table.insert(), rows)
        return len(rows)

    def update(self, table: sa.TableClause, key: str, rows: list[dict[str, Any]]) -> int:
        if not rows:
            return 0
        cols = [c for c in rows[0] if c != key]
        if self.pg:
            # one UPDATE ... FROM a temporary table, not one statement per row
            tmp = f"_autoroi_mutate_{table.name}"
            names = ", ".join([key, *cols])
            self.conn.exec_driver_sql(
                f"CREATE TEMP TABLE {tmp} ON COMMIT DROP AS SELECT {names} FROM {table.name} WITH NO DATA"
            )
            self.conn.execute(
                sa.table(tmp, *[sa.column(c, table.c[c].type) for c in [key, *cols]]).insert(), rows
            )
            sets = ", ".join(f"{c} = m.{c}" for c in cols)
            result = self.conn.exec_driver_sql(
                f"UPDATE {table.name} AS t SET {sets} FROM {tmp} AS m WHERE t.{key} = m.{key}"
            )
            self.conn.exec_driver_sql(f"DROP TABLE {tmp}")
            return int(result.rowcount)
        stmt = (
            sa.update(table)
            .where(table.c[key] == sa.bindparam("k_"))
            .values({c: sa.bindparam(f"v_{c}") for c in cols})
        )
        self.conn.execute(stmt, [{"k_": r[key], **{f"v_{c}": r[c] for c in cols}} for r in rows])
        return len(rows)

    def delete(self, table: sa.TableClause, key: str, ids: list[int]) -> int:
        n = 0
        for i in range(0, len(ids), _IN_CHUNK):
            result = self.conn.execute(sa.delete(table).where(table.c[key].in_(ids[i : i + _IN_CHUNK])))
            n += int(result.rowcount)
        return n


@dataclass
class _State:
    n_sales: int
    max_sale_id: int
    n_customers: int
    max_customer_id: int
    max_program_id: int
    max_eligibility_id: int
    last_change: datetime
    sales_columns: list[str]


def _state(conn: Connection) -> _State:
    s, c = schema.sales, schema.customers
    try:
        n_sales, max_sale, last_sale = conn.execute(
            sa.select(sa.func.count(), sa.func.max(s.c.sale_id), sa.func.max(s.c.updated_at))
        ).one()
    except sa.exc.DBAPIError as e:
        raise SourceError(
            f"the source has no readable sales table ({describe_db_error(e)}); run `autoroi generate` first"
        ) from e
    if not n_sales:
        raise SourceError("the source has no sales; run `autoroi generate` first")
    n_cust, max_cust = conn.execute(sa.select(sa.func.count(), sa.func.max(c.c.customer_id))).one()
    max_prog = conn.execute(sa.select(sa.func.max(schema.incentive_programs.c.program_id))).scalar()
    max_elig = conn.execute(sa.select(sa.func.max(schema.program_eligibility.c.eligibility_id))).scalar()
    last = _utc(last_sale)
    for t in schema.metadata.sorted_tables:  # never behind any table's watermark
        value = conn.execute(sa.select(sa.func.max(t.c.updated_at))).scalar()
        if value is not None:
            last = max(last, _utc(value))
    columns = [col["name"] for col in sa.inspect(conn).get_columns("sales")]
    return _State(
        int(n_sales),
        int(max_sale),
        int(n_cust or 0),
        int(max_cust or 0),
        int(max_prog or 0),
        int(max_elig or 0),
        last,
        columns,
    )


# --------------------------------------------------------------------------- one batch


def _apply_batch(
    conn: Connection,
    seed: int,
    number: int,
    pools: Pools,
    worlds: dict[SimulationRecord, TruthWorld],
    shock: str | None,
) -> BatchReport:
    st = _state(conn)
    record = read_record(conn)
    rng = stream(seed, "mutate", st.max_sale_id, st.n_sales)
    clock = st.last_change + timedelta(days=7)
    report = BatchReport(batch=number, clock=clock)
    w = _Writer(conn)
    if DELIVERY_COLUMN not in st.sales_columns:
        conn.exec_driver_sql(f"ALTER TABLE sales ADD COLUMN {DELIVERY_COLUMN} DATE")
        report.added_columns.append(f"sales.{DELIVERY_COLUMN}")
    if shock is not None:  # from this batch's first day on
        first_day = (st.last_change.date() - EPOCH).days
        p = schema.incentive_programs
        on_offer = sa.select(p.c.incentive_type).where(
            p.c.start_date <= EPOCH + timedelta(days=first_day + 6),
            p.c.end_date >= EPOCH + timedelta(days=first_day),
        )
        running = tuple(sorted({str(t) for t in conn.execute(on_offer.distinct()).scalars()}))
        chosen = choose_shock(shock, stream(seed, "shock", st.max_sale_id), first_day, running)
        record = add_shock(conn, record, chosen)
        report.shock = chosen.describe()
    _launch_new_models(conn, w, record, clock, report)

    regions = conn.execute(
        sa.select(schema.regions.c.region_id, schema.regions.c.name).order_by(schema.regions.c.region_id)
    ).all()
    names = [r[0] for r in REGIONS]
    region_idx = {
        rid: (names.index(name) if name in names else (rid - 1) % len(REGIONS)) for rid, name in regions
    }
    m = schema.vehicle_models
    models = pd.DataFrame(
        conn.execute(sa.select(m.c.model_id, m.c.segment, m.c.msrp).order_by(m.c.model_id)).all(),
        columns=["model_id", "segment", "msrp"],
    )
    models["msrp"] = models["msrp"].map(float)
    models["seg"] = models["segment"].map(lambda s: SEGMENTS.index(s) if s in SEGMENTS else 0)
    d = schema.dealers
    dealers = {
        int(k): int(v)
        for k, v in conn.execute(sa.select(d.c.dealer_id, d.c.region_id).order_by(d.c.dealer_id)).all()
    }

    s = schema.sales
    recent_cols = ["sale_id", "dealer_id", "model_id", "customer_id", "sale_date", "sale_price",
                   "trade_in_value", "program_id", "incentive_amount"]  # fmt: skip
    query = sa.select(*[s.c[c] for c in recent_cols])
    since = clock.date() - timedelta(days=RECENT_DAYS)
    rows = conn.execute(query.where(s.c.sale_date >= since).order_by(s.c.sale_id)).all()
    if not rows:  # a database left alone for months: the latest sales count as recent
        rows = conn.execute(query.order_by(s.c.sale_id.desc()).limit(5_000)).all()[::-1]
    recent = pd.DataFrame(rows, columns=recent_cols)

    program = _new_program(conn, w, rng, st, clock, models, region_idx, report)
    _cancel_and_correct(w, rng, st, clock, recent, report)
    if record not in worlds:
        worlds[record] = world_for(record)
    world = (worlds[record], record.shocks)
    _insert_sales(conn, w, rng, pools, st, clock, recent, models, dealers, region_idx, world, report)
    _update_customers(conn, w, rng, pools, st, clock, report)
    _update_dealers(w, rng, clock, dealers, report)
    log.debug("batch %d: new program %s", number, program)
    return report


def _new_program(
    conn: Connection,
    w: _Writer,
    rng: np.random.Generator,
    st: _State,
    clock: datetime,
    models: pd.DataFrame,
    region_idx: dict[int, int],
    report: BatchReport,
) -> str | None:
    """Announced now, starting the Monday after, so later batches sell under
    it; as often, as long and as wide as the generated history's programs."""
    if rng.random() >= PROGRAMS_PER_WEEK:
        report.inserted["incentive_programs"] = report.inserted["program_eligibility"] = 0
        return None
    weights = np.array([INCENTIVES[t].weight for t in INCENTIVE_TYPES])
    ptype = INCENTIVE_TYPES[int(rng.choice(len(INCENTIVE_TYPES), p=weights / weights.sum()))]
    start = clock.date() + timedelta(days=7 - clock.weekday())
    end = start + timedelta(weeks=int(rng.integers(*PROGRAM_WEEKS)), days=-1)
    in_regions, in_models, amount = program_scope(
        rng, INCENTIVE_TYPES.index(ptype), models["seg"].to_numpy(), models["msrp"].to_numpy()
    )
    chosen_regions = sorted(rid for rid, i in region_idx.items() if in_regions[i])
    chosen_models = sorted(int(x) for x in models.loc[in_models, "model_id"])
    n_regions = len(region_idx)
    pid = st.max_program_id + 1
    code = program_code(ptype, start, pid)
    weekly = (
        st.n_sales
        / N_WEEKS
        * len(chosen_models)
        / max(len(models), 1)
        * len(chosen_regions)
        / max(n_regions, 1)
    )
    budget = (
        None if rng.random() < 0.25 else max(10_000.0, round(amount * weekly * 8 * 0.5 / 10_000) * 10_000)
    )
    rt, vm = schema.regions, schema.vehicle_models
    region_names = {int(k): str(v) for k, v in conn.execute(sa.select(rt.c.region_id, rt.c.name)).all()}
    model_names = {int(k): str(v) for k, v in conn.execute(sa.select(vm.c.model_id, vm.c.name)).all()}
    description = describe_program(
        ptype, [model_names[i] for i in chosen_models], [region_names[i] for i in chosen_regions], start
    )
    now = w.ts(_clock_us(clock))
    report.inserted["incentive_programs"] = w.insert(
        _typed(schema.incentive_programs),
        [
            {
                "program_id": pid,
                "code": code,
                "incentive_type": ptype,
                "amount": amount,
                "start_date": start,
                "end_date": end,
                "budget": budget,
                "description": description,
                "updated_at": now,
            }
        ],
    )
    rows = []
    eid = st.max_eligibility_id
    for r in chosen_regions:
        for mid in chosen_models:
            eid += 1
            rows.append(
                {
                    "eligibility_id": eid,
                    "program_id": pid,
                    "region_id": int(r),
                    "model_id": int(mid),
                    "updated_at": now,
                }
            )
    report.inserted["program_eligibility"] = w.insert(_typed(schema.program_eligibility), rows)
    return code


def _launch_new_models(
    conn: Connection, w: _Writer, record: SimulationRecord, clock: datetime, report: BatchReport
) -> None:
    """A ``new_model`` shock puts its model on sale (once)."""
    m = schema.vehicle_models
    names = set(conn.execute(sa.select(m.c.name)).scalars().all())
    rows = []
    next_id = int(conn.execute(sa.select(sa.func.max(m.c.model_id))).scalar() or 0)
    for s in record.shocks:
        if s.kind != "new_model" or s.vehicle_model in names:
            continue
        name, segment, msrp = NEW_MODEL
        next_id += 1
        margin = round(msrp * float(SEGMENT_MARGIN[SEGMENTS.index(segment)]), 2)
        rows.append(
            {
                "model_id": next_id,
                "name": name,
                "segment": segment,
                "msrp": msrp,
                "unit_margin": margin,
                "launched_on": EPOCH + timedelta(days=s.from_day),
                "updated_at": w.ts(_clock_us(clock)),
            }
        )
        names.add(name)
    if rows:
        report.inserted["vehicle_models"] = w.insert(_typed(m), rows)


def _clock_us(clock: datetime) -> int:
    return int((clock - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))


def _cancel_and_correct(
    w: _Writer,
    rng: np.random.Generator,
    st: _State,
    clock: datetime,
    recent: pd.DataFrame,
    report: BatchReport,
) -> None:
    sales = _typed(schema.sales)
    n = len(recent)
    cancel_pool = np.flatnonzero(recent["sale_date"].to_numpy() >= clock.date() - timedelta(days=CANCEL_DAYS))
    if len(cancel_pool) == 0:
        cancel_pool = np.arange(n)
    n_del = min(max(1, round(DELETE_SHARE * st.n_sales)), len(cancel_pool) // 2)
    cancel = np.sort(rng.choice(cancel_pool, n_del, replace=False)) if n_del else np.array([], dtype=np.int64)
    rest = np.setdiff1d(np.arange(n), cancel)
    n_upd = min(max(1, round(UPDATE_SHARE * st.n_sales)), len(rest))
    fix = np.sort(rng.choice(rest, n_upd, replace=False)) if n_upd else np.array([], dtype=np.int64)

    report.deleted["sales"] = w.delete(
        sales, "sale_id", [int(x) for x in recent["sale_id"].to_numpy()[cancel]]
    )

    rows = recent.iloc[fix]
    kind = rng.choice(3, len(rows), p=[0.45, 0.35, 0.20])
    price_factor = 1 + rng.normal(0, 0.012, len(rows))
    new_trade = np.clip(np.round(np.exp(rng.normal(np.log(13_000), 0.55, len(rows))) / 50) * 50, 300, 75_000)
    trade_factor = rng.uniform(0.85, 1.10, len(rows))
    now = w.ts(_clock_us(clock))
    out = []
    for i, row in enumerate(rows.itertuples(index=False)):
        price, trade = _num(row.sale_price), _num(row.trade_in_value)
        program, amount = _num(row.program_id), _num(row.incentive_amount)
        k = int(kind[i])
        if k == 2 and program is None:
            k = 0
        if k == 0 and price is not None:
            price = round(price * float(price_factor[i]), 2)
        elif k == 1:
            trade = float(new_trade[i]) if trade is None else float(round(trade * trade_factor[i] / 50) * 50)
        elif k == 2:  # the incentive claim was rejected
            program, amount = None, None
        out.append(
            {
                "sale_id": int(row.sale_id),  # type: ignore[arg-type]
                "sale_price": price,
                "trade_in_value": trade,
                "program_id": None if program is None else int(program),
                "incentive_amount": amount,
                "updated_at": now,
            }
        )
    report.updated["sales"] = w.update(sales, "sale_id", out)


def _insert_sales(
    conn: Connection,
    w: _Writer,
    rng: np.random.Generator,
    pools: Pools,
    st: _State,
    clock: datetime,
    recent: pd.DataFrame,
    models: pd.DataFrame,
    dealers: dict[int, int],
    region_idx: dict[int, int],
    world: tuple[TruthWorld, tuple[Shock, ...]],
    report: BatchReport,
) -> None:
    base_us = _clock_us(st.last_change)
    clock_us = _clock_us(clock)
    first_day = (st.last_change.date() - EPOCH).days
    days = first_day + np.arange(7, dtype=np.int64)
    new = draw_sales(
        rng,
        *world,
        days,
        models,
        {d: region_idx.get(r, 0) for d, r in dealers.items()},
        _offers(conn, days, region_idx),
    )
    report.expected_sales = round(new.expected, 3)
    n = len(new.day)
    if n == 0:
        report.inserted["sales"] = report.inserted["customers"] = 0
        return
    dealer, model, day = new.dealer_id, new.model_id, new.day
    existing = recent["customer_id"].to_numpy()[rng.integers(0, len(recent), n)].astype(np.int64)
    region = np.array([dealers.get(int(x), 1) for x in dealer], dtype=np.int64)
    ridx = np.array([region_idx.get(int(r), 0) for r in region])
    offset = np.array([r[2] for r in REGIONS])[ridx]
    created = day * 86_400_000_000 + ((9 + 11 * rng.beta(2, 2, n) + offset) * US_PER_HOUR).astype(np.int64)
    created = np.clip(created, base_us + 1_000_000, clock_us)
    order = np.lexsort((created, day))
    dealer, model, existing, region, ridx, day, created, program, ptype, amount = (
        a[order] for a in (dealer, model, existing, region, ridx, day, created,
                           new.program_id, new.ptype, new.amount)
    )  # fmt: skip
    sale_id = st.max_sale_id + 1 + np.arange(n, dtype=np.int64)

    # new customers, on file shortly before their purchase
    is_new = rng.random(n) < NEW_CUSTOMER_SHARE
    new_idx = np.flatnonzero(is_new)
    customer = existing.copy()
    customer[new_idx] = st.max_customer_id + 1 + np.arange(len(new_idx))
    if len(new_idx):
        people = make_people(rng, pools, len(new_idx))
        addr = make_addresses(rng, pools, ridx[new_idx])
        c_created = np.maximum(
            created[new_idx] - (rng.uniform(0, 2, len(new_idx)) * US_PER_HOUR).astype(np.int64),
            base_us + 1_000_000,
        )
        birth = (START_DAY - np.clip(rng.normal(48, 15, len(new_idx)), 18, 92) * 365.25).astype(np.int64)
        emails = people["email"].to_pylist()
        phones = people["phone"].to_pylist()
        no_email = rng.random(len(new_idx)) < 0.12
        no_phone = rng.random(len(new_idx)) < 0.07
        no_birth = rng.random(len(new_idx)) < 0.15
        rows = []
        for j in range(len(new_idx)):
            ts = w.ts(int(c_created[j]))
            rows.append(
                {
                    "customer_id": int(customer[new_idx[j]]),
                    "first_name": people["first_name"][j].as_py(),
                    "last_name": people["last_name"][j].as_py(),
                    "email": None if no_email[j] else emails[j],
                    "phone": None if no_phone[j] else phones[j],
                    "birth_date": None if no_birth[j] else EPOCH + timedelta(days=int(birth[j])),
                    "street": addr["street"][j].as_py(),
                    "city": addr["city"][j].as_py(),
                    "zip": addr["zip"][j].as_py(),
                    "region_id": int(region[new_idx[j]]),
                    "created_at": ts,
                    "updated_at": ts,
                }
            )
        report.inserted["customers"] = w.insert(_typed(schema.customers), rows)
    else:
        report.inserted["customers"] = 0

    minfo = models.set_index("model_id")
    fleet = rng.random(n) < 0.03
    terms = deal_terms(
        rng,
        msrp=minfo.loc[model, "msrp"].to_numpy(),
        segment=minfo.loc[model, "seg"].to_numpy(),
        ptype=ptype,
        amount=amount,
        fleet=fleet,
        years=(day - START_DAY) / 365.25,
    )
    dates = [EPOCH + timedelta(days=int(x)) for x in day]
    model_year = np.array([dt.year + (dt.month >= 7) for dt in dates])
    vins = make_vins(rng, sale_id, model, model_year).to_pylist()
    delivery = day + rng.integers(0, 15, n)
    fin = np.array(["cash", "finance", "lease"], dtype=object)[terms["financing"]].tolist()
    apr = _nullable(terms["apr"], np.isnan(terms["apr"]))
    term = _nullable(terms["term_months"], terms["term_months"] < 0)
    trade = _nullable(terms["trade_in_value"], np.isnan(terms["trade_in_value"]))
    rows = []
    for i in range(n):
        ts = w.ts(int(created[i]))
        rows.append(
            {
                "sale_id": int(sale_id[i]),
                "dealer_id": int(dealer[i]),
                "customer_id": int(customer[i]),
                "model_id": int(model[i]),
                "vin": vins[i],
                "sale_date": dates[i],
                "sale_price": float(terms["sale_price"][i]),
                "program_id": None if program[i] < 0 else int(program[i]),
                "incentive_amount": None if program[i] < 0 else float(amount[i]),
                "financing_type": fin[i],
                "apr": apr[i],
                "term_months": term[i],
                "trade_in_value": trade[i],
                "is_fleet": bool(fleet[i]),
                "created_at": ts,
                "updated_at": ts,
                DELIVERY_COLUMN: EPOCH + timedelta(days=int(delivery[i])),
            }
        )
    report.inserted["sales"] = w.insert(_typed(schema.sales, sa.column(DELIVERY_COLUMN, sa.Date())), rows)


def _offers(conn: Connection, days: np.ndarray, region_idx: dict[int, int]) -> pd.DataFrame:
    """Programs on offer on ``days`` or ended within the pull-forward window
    before them, one row per eligible (region, model)."""
    p, e = schema.incentive_programs, schema.program_eligibility
    d0 = EPOCH + timedelta(days=int(days.min()) - 7 * (PULL_FORWARD_WEEKS + 1))
    d1 = EPOCH + timedelta(days=int(days.max()))
    rows = conn.execute(
        sa.select(
            p.c.program_id, p.c.incentive_type, p.c.amount, p.c.start_date, p.c.end_date,
            e.c.region_id, e.c.model_id,
        )
        .join(e, e.c.program_id == p.c.program_id)
        .where(p.c.start_date <= d1, p.c.end_date >= d0)
        .order_by(p.c.program_id, e.c.region_id, e.c.model_id)
    ).all()  # fmt: skip
    out = pd.DataFrame(
        [
            {
                "program_id": int(r.program_id),
                "ptype": INCENTIVE_TYPES.index(r.incentive_type),
                "amount": float(r.amount),
                "start": (_day(r.start_date) - EPOCH).days,
                "end": (_day(r.end_date) - EPOCH).days,
                "region": region_idx.get(int(r.region_id), 0),
                "model_id": int(r.model_id),
            }
            for r in rows
            if r.incentive_type in INCENTIVE_TYPES
        ],
        columns=["program_id", "ptype", "amount", "start", "end", "region", "model_id"],
    )
    return out


def _day(value: Any) -> date:
    """SQLite may hand a DATE back as text."""
    return date.fromisoformat(value) if isinstance(value, str) else value


def _update_customers(
    conn: Connection,
    w: _Writer,
    rng: np.random.Generator,
    pools: Pools,
    st: _State,
    clock: datetime,
    report: BatchReport,
) -> None:
    """Moved e-mail providers, new phone numbers: the contact data that changes."""
    if st.n_customers == 0:
        report.updated["customers"] = 0
        return
    c = schema.customers
    k = min(st.n_customers, max(1, round(CUSTOMER_UPDATE_SHARE * st.n_customers)))
    if st.n_customers == st.max_customer_id:  # dense ids: no need to read them all
        ids = np.sort(rng.choice(st.max_customer_id, k, replace=False) + 1)
    else:
        all_ids = np.array(conn.execute(sa.select(c.c.customer_id).order_by(c.c.customer_id)).scalars().all())
        ids = np.sort(rng.choice(all_ids, k, replace=False))
    found: list[Any] = []
    for i in range(0, len(ids), _IN_CHUNK):
        chunk = [int(x) for x in ids[i : i + _IN_CHUNK]]
        found += conn.execute(
            sa.select(c.c.customer_id, c.c.first_name, c.c.last_name, c.c.email, c.c.phone)
            .where(c.c.customer_id.in_(chunk))
            .order_by(c.c.customer_id)
        ).all()
    what = rng.choice(3, len(found), p=[0.5, 0.3, 0.2])
    phones = make_phones(rng, len(found)).to_pylist()
    domains = pools.domains.to_pylist()
    dom = rng.integers(0, len(domains), len(found))
    num = rng.integers(1, 100, len(found))
    opt_out = rng.random(len(found)) < 0.05
    now = w.ts(_clock_us(clock))
    rows = []
    for j, (cid, first, last, email, phone) in enumerate(found):
        if what[j] in (0, 2):
            email = (
                None if opt_out[j] else f"{ascii_slug(first)}.{ascii_slug(last)}{num[j]}@{domains[dom[j]]}"
            )
        if what[j] in (1, 2):
            phone = phones[j]
        rows.append({"customer_id": int(cid), "email": email, "phone": phone, "updated_at": now})
    report.updated["customers"] = w.update(_typed(c), "customer_id", rows)


def _update_dealers(
    w: _Writer, rng: np.random.Generator, clock: datetime, dealers: dict[int, int], report: BatchReport
) -> None:
    if not dealers or rng.random() < 0.5:
        report.updated["dealers"] = 0
        return
    dealer_id = int(rng.choice(sorted(dealers)))
    phone = make_phones(rng, 1).to_pylist()[0]
    report.updated["dealers"] = w.update(
        _typed(schema.dealers),
        "dealer_id",
        [{"dealer_id": dealer_id, "owner_phone": phone, "updated_at": w.ts(_clock_us(clock))}],
    )


def delivery_date_exists(conn: Connection) -> bool:
    """Whether the first mutate batch has migrated ``sales`` yet."""
    return DELIVERY_COLUMN in [c["name"] for c in sa.inspect(conn).get_columns("sales")]
