"""A tiny hand-made source for tests that must not depend on the simulator."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def make_source(path: Path, rows: int = 500) -> str:
    url = f"sqlite:///{path}"
    engine = sa.create_engine(url)
    md = sa.MetaData()
    items = sa.Table(
        "items",
        md,
        sa.Column("item_id", sa.BigInteger, primary_key=True),
        sa.Column("price", sa.Numeric(10, 2), nullable=False),
        sa.Column("name", sa.String(32)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    md.create_all(engine)
    with engine.begin() as c:
        c.execute(
            items.insert(),
            [
                {
                    "item_id": i,
                    "price": Decimal("10.25") + i,
                    "name": f"Zoë {i}" if i % 5 else None,
                    "updated_at": T0 + dt.timedelta(minutes=i),
                }
                for i in range(1, rows + 1)
            ],
        )
    engine.dispose()
    return url
