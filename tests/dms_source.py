"""A small simulated dealer database (SQLite) for pipeline-level tests, and
the canary PII values planted into it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import sqlalchemy as sa

from autoroi.source.db import connect_engine, parse_url
from autoroi.source.generate import generate_source

# Distinctive values no generator produces by chance; after ingest none may
# appear anywhere outside the raw zone.
CANARIES = {
    "customers": {
        "first_name": "Zebulonia",
        "last_name": "Quextrapolis",
        "email": "zebulonia.canary@leak-test.example",
        "phone": "+1-555-019-7788",
        "street": "742 Canarywood Terrace",
    },
    "dealers": {
        "name": "Quextrapolis Canary Motors",
        "owner_first_name": "Ottoline",
        "owner_last_name": "Brackenwhistle",
        "owner_email": "ottoline@canary-motors.example",
        "owner_phone": "+1-555-014-2233",
        "street": "1 Canary Plaza",
    },
    "sales": {"vin": "1CANARY7W3XK00042"},
}


def make_dms_source(path: Path, sales_rows: int = 30_000, seed: int = 3) -> str:
    url = f"sqlite:///{path}"
    engine = connect_engine(parse_url(url))
    try:
        generate_source(engine, seed=seed, sales_rows=sales_rows)
    finally:
        engine.dispose()
    return url


def plant_canaries(url: str) -> list[str]:
    """Put the canary values on one customer, one dealer and one sale;
    returns every planted value."""
    engine = sa.create_engine(url)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with engine.begin() as c:
        for table, key in (("customers", "customer_id"), ("dealers", "dealer_id"), ("sales", "sale_id")):
            first = c.execute(sa.text(f"SELECT MIN({key}) FROM {table}")).scalar_one()
            sets = ", ".join(f"{col} = :{col}" for col in CANARIES[table])
            c.execute(
                sa.text(f"UPDATE {table} SET {sets}, updated_at = :now WHERE {key} = :key"),
                {**CANARIES[table], "now": now, "key": first},
            )
    engine.dispose()
    return [v for cols in CANARIES.values() for v in cols.values()]
