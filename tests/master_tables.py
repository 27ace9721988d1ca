"""A small, valid master table for tests of validation and publishing (the
real one comes from Spark; these tests are about what happens around it)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

MONDAY = dt.date(2025, 1, 6)


def master_table(
    weeks: int = 8, cells: int = 3, units: int = 10, k: int = 5, start: dt.date = MONDAY
) -> pa.Table:
    rows: dict[str, list] = {
        k_: []
        for k_ in (
            "week_start",
            "cell_level",
            "region",
            "vehicle_model",
            "super_region",
            "segment",
            "units",
            "dealer_count",
            "msrp",
            "unit_margin",
            "incentive_depth",
        )
    }
    for c in range(cells):
        for w in range(weeks):
            rows["week_start"].append(start + dt.timedelta(weeks=w))
            rows["cell_level"].append("region_model")
            rows["region"].append(f"Region {c}")
            rows["vehicle_model"].append(f"Model {c}")
            rows["super_region"].append("North")
            rows["segment"].append("suv")
            rows["units"].append(units + w)
            rows["dealer_count"].append(k + c)
            rows["msrp"].append(30000.0)
            rows["unit_margin"].append(2500.0)
            rows["incentive_depth"].append(0.05 if w % 2 else None)
    return pa.table(
        rows,
        schema=pa.schema(
            [
                ("week_start", pa.date32()),
                ("cell_level", pa.string()),
                ("region", pa.string()),
                ("vehicle_model", pa.string()),
                ("super_region", pa.string()),
                ("segment", pa.string()),
                ("units", pa.int64()),
                ("dealer_count", pa.int64()),
                ("msrp", pa.float64()),
                ("unit_margin", pa.float64()),
                ("incentive_depth", pa.float64()),
            ]
        ),
    )


def replace_column(table: pa.Table, name: str, values: list) -> pa.Table:
    i = table.schema.get_field_index(name)
    return table.set_column(i, table.schema.field(name), pa.array(values, table.schema.field(name).type))
