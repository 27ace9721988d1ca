"""Schema of the simulated dealer management system.

Every table has a single integer primary key and an ``updated_at`` column set
on every insert and update, as operational systems usually do; replication
relies on both (see ``autoroi.replication``).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
)

INCENTIVE_TYPES = (
    "cash_rebate",
    "apr_subsidy",
    "lease_subsidy",
    "loyalty",
    "conquest",
    "dealer_cash",
)
SEGMENTS = ("compact", "sedan", "suv", "truck", "ev", "luxury")
FINANCING_TYPES = ("cash", "finance", "lease")

metadata = MetaData()


def _ts(name: str, nullable: bool = False) -> Column:
    return Column(name, DateTime(timezone=True), nullable=nullable)


regions = Table(
    "regions",
    metadata,
    Column("region_id", Integer, primary_key=True, autoincrement=False),
    Column("name", String(64), nullable=False, unique=True),
    Column("super_region", String(64), nullable=False),
    _ts("updated_at"),
)

dealers = Table(
    "dealers",
    metadata,
    Column("dealer_id", Integer, primary_key=True, autoincrement=False),
    Column("region_id", Integer, ForeignKey("regions.region_id"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("size_class", String(16), nullable=False),
    Column("owner_first_name", String(64), nullable=False),
    Column("owner_last_name", String(64), nullable=False),
    Column("owner_email", String(128)),
    Column("owner_phone", String(32)),
    Column("street", String(128), nullable=False),
    Column("city", String(64), nullable=False),
    Column("zip", String(10), nullable=False),
    Column("opened_on", Date, nullable=False),
    _ts("updated_at"),
)

customers = Table(
    "customers",
    metadata,
    Column("customer_id", BigInteger, primary_key=True, autoincrement=False),
    Column("first_name", String(64), nullable=False),
    Column("last_name", String(64), nullable=False),
    Column("email", String(128)),
    Column("phone", String(32)),
    Column("birth_date", Date),
    Column("street", String(128)),
    Column("city", String(64)),
    Column("zip", String(10)),
    Column("region_id", Integer, ForeignKey("regions.region_id"), nullable=False),
    _ts("created_at"),
    _ts("updated_at"),
)

vehicle_models = Table(
    "vehicle_models",
    metadata,
    Column("model_id", Integer, primary_key=True, autoincrement=False),
    Column("name", String(64), nullable=False, unique=True),
    Column("segment", String(16), nullable=False),
    Column("msrp", Numeric(10, 2), nullable=False),
    Column("unit_margin", Numeric(10, 2), nullable=False),
    Column("launched_on", Date, nullable=False),
    _ts("updated_at"),
)

incentive_programs = Table(
    "incentive_programs",
    metadata,
    Column("program_id", Integer, primary_key=True, autoincrement=False),
    Column("code", String(32), nullable=False, unique=True),
    Column("incentive_type", String(16), nullable=False),
    Column("amount", Numeric(10, 2), nullable=False),
    Column("start_date", Date, nullable=False),
    Column("end_date", Date, nullable=False),
    Column("budget", Numeric(14, 2)),
    Column("description", String(256)),
    _ts("updated_at"),
)

program_eligibility = Table(
    "program_eligibility",
    metadata,
    Column("eligibility_id", Integer, primary_key=True, autoincrement=False),
    Column("program_id", Integer, ForeignKey("incentive_programs.program_id"), nullable=False),
    Column("region_id", Integer, ForeignKey("regions.region_id"), nullable=False),
    Column("model_id", Integer, ForeignKey("vehicle_models.model_id"), nullable=False),
    _ts("updated_at"),
)

sales = Table(
    "sales",
    metadata,
    Column("sale_id", BigInteger, primary_key=True, autoincrement=False),
    Column("dealer_id", Integer, ForeignKey("dealers.dealer_id"), nullable=False),
    Column("customer_id", BigInteger, ForeignKey("customers.customer_id"), nullable=False),
    Column("model_id", Integer, ForeignKey("vehicle_models.model_id"), nullable=False),
    Column("vin", String(17), nullable=False),
    Column("sale_date", Date, nullable=False),
    Column("sale_price", Numeric(10, 2), nullable=False),
    Column("program_id", Integer, ForeignKey("incentive_programs.program_id")),
    Column("incentive_amount", Numeric(10, 2)),
    Column("financing_type", String(8), nullable=False),
    Column("apr", Numeric(5, 2)),
    Column("term_months", Integer),
    Column("trade_in_value", Numeric(10, 2)),
    Column("is_fleet", Boolean, nullable=False),
    _ts("created_at"),
    _ts("updated_at"),
)

# An operational system indexes what its own screens filter on; replication's
# change query on updated_at is one of those.
for _t in metadata.sorted_tables:
    Index(f"ix_{_t.name}_updated_at", _t.c.updated_at)
Index("ix_sales_sale_date", sales.c.sale_date)

# Parents before children: the order to create and load in.
TABLE_ORDER = [t.name for t in metadata.sorted_tables]

# The simulator's own record in the source database (the world a seed drew, the
# regime changes ``autoroi mutate --shock`` applied): not part of the dealer
# system, kept out of ``metadata`` so loaders and checks never see it, and never
# replicated (names with this prefix are skipped).
SIMULATOR_PREFIX = "_autoroi_"
simulator_metadata = MetaData()
simulation = Table(
    f"{SIMULATOR_PREFIX}simulation",
    simulator_metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(4000), nullable=False),
)

# Columns that identify a person or a dealer directly (issue: anonymization).
DIRECT_IDENTIFIERS = {
    "dealers": ("name", "owner_first_name", "owner_last_name", "owner_email", "owner_phone", "street"),
    "customers": ("first_name", "last_name", "email", "phone", "street"),
    "sales": ("vin",),
}
