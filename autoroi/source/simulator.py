"""A simulated dealer management system whose sales follow a known causal model.

The ROI of a real incentive can only be estimated, never observed. Drawing the
sales from a model written down here lets the project score its estimates
against the truth (DESIGN.md, "The source system and its ground truth").

Everything in this module is pure and deterministic per seed: numpy
``default_rng`` streams derived from the seed, Faker pools seeded with
``seed_instance``, a fixed calendar (never the wall clock). It builds Arrow
tables that match ``schema.py`` column for column; ``autoroi.source.generate``
writes them to a database and ``autoroi.source.mutate`` reuses the helpers for
its change stream.

The causal model, per (region, vehicle model, week) cell::

    base   = region weight x region/segment affinity x model popularity
             x seasonality x segment trend x inventory
    F      = prod over active programs p of (1 + lift_p)
    lift_p = max_lift[type] x segment_response[type, segment]
             x region_response[type, region] x (1 - exp(-k[type] x amount / msrp))
    units  = base x F - pull-forward dips of programs that ended in the weeks before

Dealers split a region's units by size and a per-dealer model preference; the
drawn counts are gamma-Poisson around those expectations.
"""

from __future__ import annotations

import logging
import math
import unicodedata
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from faker import Faker

from autoroi.errors import ConfigError
from autoroi.source import schema
from autoroi.source.schema import FINANCING_TYPES, INCENTIVE_TYPES, SEGMENTS

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- calendar

START_DATE = date(2023, 11, 27)  # a Monday; fixed so that a seed means the same world forever
N_WEEKS = 156
EPOCH = date(1970, 1, 1)
START_DAY = (START_DATE - EPOCH).days
US_PER_DAY = 86_400_000_000
US_PER_HOUR = 3_600_000_000


@dataclass(frozen=True)
class Scale:
    sales_rows: int
    dealers: int


SCALES = {
    "small": Scale(200_000, 72),
    "medium": Scale(1_000_000, 150),
    "large": Scale(5_000_000, 400),
}
MAX_SALES_ROWS = 20_000_000
MIN_CUSTOMERS = 5_000

# --------------------------------------------------------------------------- the world

# name, super region, UTC offset of local business hours, ZIP3 range, demand weight
REGIONS: tuple[tuple[str, str, int, tuple[int, int], float], ...] = (
    ("Northeast", "East", 5, (10, 149), 1.00),
    ("Mid-Atlantic", "East", 5, (150, 219), 0.95),
    ("Southeast", "East", 5, (270, 349), 1.20),
    ("Great Lakes", "Central", 5, (430, 499), 1.00),
    ("Plains", "Central", 6, (500, 693), 0.80),
    ("South Central", "Central", 6, (700, 799), 1.10),
    ("Mountain", "West", 7, (800, 899), 0.80),
    ("Pacific", "West", 8, (900, 999), 1.15),
)

# region x segment (compact, sedan, suv, truck, ev, luxury)
REGION_AFFINITY = np.array(
    [
        [1.10, 1.10, 1.00, 0.70, 1.20, 1.30],
        [1.00, 1.10, 1.05, 0.80, 1.00, 1.20],
        [1.00, 1.10, 1.10, 1.10, 0.70, 1.00],
        [0.90, 1.00, 1.10, 1.20, 0.70, 0.80],
        [0.80, 0.90, 1.00, 1.50, 0.50, 0.70],
        [0.90, 0.95, 1.10, 1.50, 0.60, 0.90],
        [0.80, 0.85, 1.20, 1.30, 0.90, 0.80],
        [1.20, 1.00, 0.90, 0.70, 1.80, 1.20],
    ]
)

# name, segment, base MSRP, launched on
MODELS: tuple[tuple[str, str, int, date], ...] = (
    ("Pico", "compact", 21_500, date(2017, 9, 1)),
    ("Zest", "compact", 24_400, date(2019, 3, 1)),
    ("Vela", "sedan", 27_800, date(2016, 6, 1)),
    ("Meridian", "sedan", 32_500, date(2018, 10, 1)),
    ("Solstice", "sedan", 37_900, date(2020, 4, 1)),
    ("Kestrel", "suv", 32_900, date(2019, 8, 1)),
    ("Ridgeback", "suv", 39_500, date(2017, 2, 1)),
    ("Summit", "suv", 47_200, date(2021, 1, 15)),
    ("Mesa", "truck", 36_800, date(2020, 9, 1)),
    ("Forge 1500", "truck", 48_500, date(2015, 5, 1)),
    ("Forge HD", "truck", 62_000, date(2016, 11, 1)),
    ("Volta", "ev", 35_900, date(2022, 3, 1)),
    ("Ion", "ev", 44_500, date(2021, 6, 1)),
    ("Lumen", "ev", 58_900, date(2023, 2, 1)),
    ("Regent", "luxury", 63_500, date(2018, 3, 1)),
    ("Sovereign", "luxury", 81_900, date(2020, 10, 1)),
    ("Aria", "luxury", 71_000, date(2022, 9, 1)),
)

SEGMENT_SHARE = np.array([1.10, 0.90, 1.45, 1.25, 0.70, 0.45])
SEGMENT_MARGIN = np.array([0.055, 0.065, 0.090, 0.120, 0.045, 0.130])
SEGMENT_TREND = np.array([-0.04, -0.07, 0.04, 0.02, 0.22, 0.01])  # per year, log scale
# cash, finance, lease
SEGMENT_FINANCING = np.array(
    [
        [0.20, 0.60, 0.20],
        [0.20, 0.55, 0.25],
        [0.15, 0.55, 0.30],
        [0.20, 0.65, 0.15],
        [0.10, 0.40, 0.50],
        [0.15, 0.35, 0.50],
    ]
)
MONTH_SEASON = np.array([0.82, 0.88, 1.08, 1.02, 1.08, 1.00, 1.00, 1.04, 0.96, 0.96, 0.95, 1.12])
SIZE_CLASSES = ("small", "medium", "large")
SIZE_FACTOR = np.array([0.6, 1.0, 1.7])
SIZE_PROB = np.array([0.40, 0.40, 0.20])


@dataclass(frozen=True)
class IncentiveSpec:
    """How buyers respond to one incentive type; the heart of the ground truth."""

    abbr: str
    max_lift: float  # lift approached as depth grows
    curvature: float  # k in 1 - exp(-k x depth): how fast returns diminish
    pull_forward: float  # share of the extra units borrowed from the weeks after the program
    uptake: float  # share of non-incremental buyers who take it when offered
    amount: tuple[float, float]  # dollars, or depth (share of MSRP) for cash rebates
    weight: float  # share of programs of this type
    segment_response: tuple[float, float, float, float, float, float]


INCENTIVES: dict[str, IncentiveSpec] = {
    "cash_rebate": IncentiveSpec(
        "CR", 0.85, 14.0, 0.35, 0.90, (0.015, 0.075), 0.25, (1.2, 1.2, 1.0, 1.1, 0.8, 0.6)
    ),
    "apr_subsidy": IncentiveSpec(
        "APR", 0.60, 16.0, 0.25, 0.40, (750, 3000), 0.20, (1.0, 1.1, 1.1, 1.2, 0.9, 0.8)
    ),
    "lease_subsidy": IncentiveSpec(
        "LSE", 0.50, 18.0, 0.20, 0.25, (1000, 3500), 0.15, (0.8, 0.9, 1.0, 0.7, 1.4, 1.3)
    ),
    "loyalty": IncentiveSpec(
        "LOY", 0.16, 25.0, 0.15, 0.25, (500, 1500), 0.12, (1.0, 1.0, 1.0, 1.2, 0.8, 1.1)
    ),
    "conquest": IncentiveSpec(
        "CQ", 0.22, 18.0, 0.10, 0.14, (750, 2500), 0.12, (1.0, 1.0, 1.1, 1.2, 1.3, 1.0)
    ),
    "dealer_cash": IncentiveSpec(
        "DC", 0.65, 10.0, 0.30, 0.95, (500, 3000), 0.16, (1.1, 1.1, 1.0, 1.0, 0.8, 0.7)
    ),
}
assert tuple(INCENTIVES) == INCENTIVE_TYPES
PULL_FORWARD_WEEKS = 6
PULL_FORWARD_KERNEL = 0.7 ** np.arange(PULL_FORWARD_WEEKS) / (0.7 ** np.arange(PULL_FORWARD_WEEKS)).sum()
INVENTORY_RHO, INVENTORY_SIGMA = 0.85, 0.06  # the inventory factor's AR(1) in logs
INVENTORY_CLIP = (0.6, 1.4)
DIP_CAP = 0.5  # a dip never takes more than this share of a week's baseline
DISPERSION = 8.0  # gamma shape of the dealer-level noise: smaller is noisier

VIN_ALPHABET = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"  # no I, O, Q
_VIN_VALUE = dict(
    zip(
        "ABCDEFGHJKLMNPRSTUVWXYZ",
        [1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 7, 9, 2, 3, 4, 5, 6, 7, 8, 9],
        strict=True,
    )
)
_VIN_WEIGHTS = np.array([8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2], dtype=np.int32)
_VIN_YEAR = {
    2020: "L",
    2021: "M",
    2022: "N",
    2023: "P",
    2024: "R",
    2025: "S",
    2026: "T",
    2027: "V",
    2028: "W",
    2029: "X",
    2030: "Y",
}
VIN_SERIALS = 33 * 1_000_000  # plant letter x 6 digits
_VIN_MULT = 7_654_321  # coprime with VIN_SERIALS: a fixed bijection, so VINs never collide across runs

TRUTH_SCHEMA = pa.schema(
    [
        pa.field("program_id", pa.int32(), nullable=False),
        pa.field("incentive_type", pa.string(), nullable=False),
        pa.field("region", pa.string(), nullable=False),
        pa.field("region_id", pa.int32(), nullable=False),
        pa.field("vehicle_model", pa.string(), nullable=False),
        pa.field("model_id", pa.int32(), nullable=False),
        pa.field("segment", pa.string(), nullable=False),
        pa.field("week_start", pa.date32(), nullable=False),
        pa.field("incentive_amount", pa.float64(), nullable=False),
        pa.field("units_with", pa.float64(), nullable=False),
        pa.field("units_without", pa.float64(), nullable=False),
        pa.field("pull_forward_units", pa.float64(), nullable=False),
        pa.field("incremental_units", pa.float64(), nullable=False),
        pa.field("unit_margin", pa.float64(), nullable=False),
        pa.field("units_under_incentive", pa.float64(), nullable=False),
        pa.field("incentive_cost", pa.float64(), nullable=False),
        pa.field("incremental_profit", pa.float64(), nullable=False),
        pa.field("roi", pa.float64(), nullable=False),
    ]
)


@dataclass(frozen=True)
class SourceData:
    """One simulated world: the operational tables and the truth behind them."""

    seed: int
    scale: str
    tables: dict[str, pa.Table]  # in schema.TABLE_ORDER
    truth: pa.Table  # TRUTH_SCHEMA

    @property
    def rows(self) -> dict[str, int]:
        return {name: t.num_rows for name, t in self.tables.items()}


def arrow_schema(table: sa.Table) -> pa.Schema:
    """The Arrow form of a source table: what the simulator builds and loaders expect."""
    fields = []
    for col in table.columns:
        t = col.type
        at: pa.DataType
        if isinstance(t, sa.BigInteger):
            at = pa.int64()
        elif isinstance(t, sa.Integer):
            at = pa.int32()
        elif isinstance(t, sa.Boolean):
            at = pa.bool_()
        elif isinstance(t, sa.Numeric):
            at = pa.float64()  # rounded to the column's scale; loaders convert as they need
        elif isinstance(t, sa.DateTime):
            at = pa.timestamp("us", tz="UTC")
        elif isinstance(t, sa.Date):
            at = pa.date32()
        elif isinstance(t, sa.String):
            at = pa.string()
        else:  # pragma: no cover - a new column type in schema.py needs a mapping here
            raise TypeError(f"no Arrow type for {table.name}.{col.name} ({t!r})")
        fields.append(pa.field(col.name, at, nullable=bool(col.nullable)))
    return pa.schema(fields)


def resolve_scale(scale: str, sales_rows: int | None) -> tuple[Scale, int]:
    """The preset and the exact sales count; a ``ConfigError`` that says what is allowed."""
    if scale not in SCALES:
        raise ConfigError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
    preset = SCALES[scale]
    n = preset.sales_rows if sales_rows is None else sales_rows
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        raise ConfigError(f"sales_rows must be an integer, got {type(n).__name__}")
    if n < 1:
        raise ConfigError(f"sales_rows must be at least 1, got {n}")
    if n > MAX_SALES_ROWS:
        raise ConfigError(f"sales_rows must be at most {MAX_SALES_ROWS:,}, got {n:,}")
    return preset, int(n)


def check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def stream(seed: int, part: str, *extra: int) -> np.random.Generator:
    """An independent stream per part, so that changing how one table is drawn
    leaves every other table of the same seed unchanged."""
    return np.random.default_rng([seed, zlib.crc32(part.encode()), *extra])


# --------------------------------------------------------------------------- PII pools

LOCALES = ("en_US", "es_ES", "de_DE", "fr_FR", "pl_PL", "it_IT")
LOCALE_WEIGHTS = np.array([0.52, 0.14, 0.09, 0.09, 0.08, 0.08])
EMAIL_DOMAINS = (
    "gmail.com",
    "yahoo.com",
    "outlook.com",
    "hotmail.com",
    "icloud.com",
    "aol.com",
    "proton.me",
    "comcast.net",
    "att.net",
    "gmx.com",
)
DEALER_SUFFIXES = ("Motors", "Auto Group", "Automotive", "Auto Mall", "Motor Company", "Cars")
_FOLD = str.maketrans(
    {
        "ł": "l",
        "Ł": "L",
        "ß": "ss",
        "ø": "o",
        "Ø": "O",
        "æ": "ae",
        "Æ": "AE",
        "œ": "oe",
        "Œ": "OE",
        "đ": "d",
        "Đ": "D",
    }
)


def ascii_slug(text: str) -> str:
    """Lower-case ASCII letters and digits only, as an e-mail local part needs."""
    folded = unicodedata.normalize("NFKD", text.translate(_FOLD)).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded.lower() if ch.isalnum()) or "x"


@dataclass(frozen=True)
class Pools:
    """A few thousand Faker values that numpy indexes into: one Faker call per
    pool entry, never one per row."""

    first: pa.Array
    last: pa.Array
    first_slug: pa.Array
    last_slug: pa.Array
    first_start: np.ndarray  # per locale
    first_len: np.ndarray
    last_start: np.ndarray
    last_len: np.ndarray
    streets: pa.Array
    secondary: pa.Array
    cities: pa.Array  # grouped per region
    city_zip3: np.ndarray
    city_start: np.ndarray  # per region
    city_len: np.ndarray
    domains: pa.Array


@lru_cache(maxsize=8)
def build_pools(seed: int, names_per_locale: int = 600) -> Pools:
    rng = stream(seed, "pools")
    first: list[str] = []
    last: list[str] = []
    first_start, first_len, last_start, last_len = [], [], [], []
    for i, locale in enumerate(LOCALES):
        fake = Faker(locale)
        fake.seed_instance(seed * 31 + i)
        fn = sorted({fake.first_name() for _ in range(names_per_locale)})
        ln = sorted({fake.last_name() for _ in range(names_per_locale)})
        first_start.append(len(first))
        first_len.append(len(fn))
        last_start.append(len(last))
        last_len.append(len(ln))
        first += fn
        last += ln
    fake = Faker("en_US")
    fake.seed_instance(seed)
    streets = sorted({fake.street_name() for _ in range(3000)})
    secondary = sorted({fake.secondary_address() for _ in range(300)})
    domains = list(EMAIL_DOMAINS) + sorted({fake.free_email_domain() for _ in range(20)})
    domains += sorted({fake.domain_name() for _ in range(40)})
    seen: set[str] = set()
    cities: list[str] = []
    zip3: list[int] = []
    city_start, city_len = [], []
    for _name, _super, _tz, (lo, hi), _w in REGIONS:
        city_start.append(len(cities))
        added = 0
        while added < 30:
            c = fake.city()
            if c in seen:
                continue
            seen.add(c)
            cities.append(c)
            zip3.append(int(rng.integers(lo, hi + 1)))
            added += 1
        city_len.append(added)
    return Pools(
        first=pa.array(first, pa.string()),
        last=pa.array(last, pa.string()),
        first_slug=pa.array([ascii_slug(s) for s in first], pa.string()),
        last_slug=pa.array([ascii_slug(s) for s in last], pa.string()),
        first_start=np.array(first_start),
        first_len=np.array(first_len),
        last_start=np.array(last_start),
        last_len=np.array(last_len),
        streets=pa.array(streets, pa.string()),
        secondary=pa.array(secondary, pa.string()),
        cities=pa.array(cities, pa.string()),
        city_zip3=np.array(zip3),
        city_start=np.array(city_start),
        city_len=np.array(city_len),
        domains=pa.array(domains, pa.string()),
    )


def _digits(values: np.ndarray, width: int) -> pa.Array:
    return pc.utf8_lpad(pc.cast(pa.array(values), pa.string()), width, "0")


def _null_where(arr: pa.Array, mask: np.ndarray) -> pa.Array:
    if not mask.any():
        return arr
    return pc.if_else(pa.array(mask), pa.scalar(None, arr.type), arr)


def make_people(rng: np.random.Generator, pools: Pools, n: int) -> dict[str, pa.Array]:
    """Names (several locales, non-ASCII included), e-mail and phone, vectorized."""
    loc = rng.choice(len(LOCALES), n, p=LOCALE_WEIGHTS)
    fi = pools.first_start[loc] + (rng.random(n) * pools.first_len[loc]).astype(np.int64)
    li = pools.last_start[loc] + (rng.random(n) * pools.last_len[loc]).astype(np.int64)
    fi_a, li_a = pa.array(fi), pa.array(li)
    first = pools.first.take(fi_a)
    last = pools.last.take(li_a)
    return {
        "first_name": first,
        "last_name": last,
        "email": make_emails(rng, pools, fi_a, li_a),
        "phone": make_phones(rng, n),
    }


def make_emails(rng: np.random.Generator, pools: Pools, fi: pa.Array, li: pa.Array) -> pa.Array:
    n = len(fi)
    fs = pools.first_slug.take(fi)
    ls = pools.last_slug.take(li)
    initial = pc.utf8_slice_codeunits(fs, 0, 1)
    num = _digits(rng.integers(1, 100, n), 1)
    num = pc.if_else(pa.array(rng.random(n) < 0.5), pa.scalar(""), num)
    dom = pools.domains.take(pa.array(rng.integers(0, len(pools.domains), n)))
    pattern = pa.array(rng.choice(4, n, p=[0.45, 0.25, 0.15, 0.15]).astype(np.int8))
    local = pc.choose(
        pattern,
        pc.binary_join_element_wise(fs, ".", ls, num, ""),
        pc.binary_join_element_wise(initial, ls, num, ""),
        pc.binary_join_element_wise(ls, ".", fs, ""),
        pc.binary_join_element_wise(fs, _digits(rng.integers(1, 1000, n), 2), ""),
    )
    return pc.binary_join_element_wise(local, "@", dom, "")


def make_phones(rng: np.random.Generator, n: int) -> pa.Array:
    area = _digits(rng.integers(201, 990, n), 3)
    exch = _digits(rng.integers(200, 1000, n), 3)
    line = _digits(rng.integers(0, 10_000, n), 4)
    fmt = pa.array(rng.choice(3, n, p=[0.6, 0.3, 0.1]).astype(np.int8))
    return pc.choose(
        fmt,
        pc.binary_join_element_wise("(", area, ") ", exch, "-", line, ""),
        pc.binary_join_element_wise(area, exch, line, "-"),
        pc.binary_join_element_wise("+1", area, exch, line, " "),
    )


def make_addresses(rng: np.random.Generator, pools: Pools, region_idx: np.ndarray) -> dict[str, pa.Array]:
    """Street, city and a ZIP whose first three digits belong to the region."""
    n = len(region_idx)
    ci = pools.city_start[region_idx] + (rng.random(n) * pools.city_len[region_idx]).astype(np.int64)
    house = pc.cast(pa.array(rng.integers(1, 10_000, n)), pa.string())
    street = pc.binary_join_element_wise(
        house, pools.streets.take(pa.array(rng.integers(0, len(pools.streets), n))), " "
    )
    with_unit = rng.random(n) < 0.12
    unit = pools.secondary.take(pa.array(rng.integers(0, len(pools.secondary), n)))
    street = pc.if_else(pa.array(with_unit), pc.binary_join_element_wise(street, unit, ", "), street)
    zip_code = _digits(pools.city_zip3[ci] * 100 + rng.integers(0, 100, n), 5)
    return {"street": street, "city": pools.cities.take(pa.array(ci)), "zip": zip_code}


# --------------------------------------------------------------------------- sale details


def vin_model_code(model_ids: np.ndarray) -> np.ndarray:
    """Three VIN characters (positions 4-6) that identify the model line."""
    a = len(VIN_ALPHABET)
    code = (np.asarray(model_ids, dtype=np.int64) * 977 + 131) % (a**3)
    return np.stack([code // (a * a), (code // a) % a, code % a], axis=1)


def make_vins(
    rng: np.random.Generator, sale_ids: np.ndarray, model_ids: np.ndarray, model_years: np.ndarray
) -> pa.Array:
    """17-character VINs with a valid check digit. The serial (positions 11-17)
    is a fixed bijection of the sale id, so VINs are unique across generate and
    every later mutate batch."""
    n = len(sale_ids)
    alpha = np.frombuffer(VIN_ALPHABET.encode(), dtype=np.uint8)
    mat = np.empty((n, 17), dtype=np.uint8)
    wmi = np.frombuffer(b"1AR2AR3AR", dtype=np.uint8).reshape(3, 3)
    mat[:, 0:3] = wmi[rng.choice(3, n, p=[0.7, 0.15, 0.15])]
    mat[:, 3:6] = alpha[vin_model_code(model_ids)]
    mat[:, 6] = alpha[rng.integers(0, 23, n)]  # body / trim, a letter
    mat[:, 7] = alpha[23 + rng.integers(0, 10, n)]  # restraint system, a digit
    years = np.array([ord(_VIN_YEAR.get(int(y), "X")) for y in range(2020, 2031)], dtype=np.uint8)
    mat[:, 9] = years[np.clip(np.asarray(model_years) - 2020, 0, 10)]
    serial = (_VIN_MULT * (np.asarray(sale_ids, dtype=np.int64) - 1) + 1_234_567) % VIN_SERIALS
    mat[:, 10] = alpha[serial // 1_000_000]
    rest = serial % 1_000_000
    for pos in range(16, 10, -1):
        mat[:, pos] = 48 + rest % 10
        rest //= 10
    lut = np.zeros(256, dtype=np.int32)
    for ch, v in _VIN_VALUE.items():
        lut[ord(ch)] = v
    for d in range(10):
        lut[48 + d] = d
    total = np.zeros(n, dtype=np.int32)
    for pos in range(17):
        if pos != 8:
            total += lut[mat[:, pos]] * _VIN_WEIGHTS[pos]
    check = total % 11
    mat[:, 8] = np.where(check == 10, ord("X"), 48 + check).astype(np.uint8)
    offsets = np.arange(0, 17 * (n + 1), 17, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(mat.tobytes()))


def deal_terms(
    rng: np.random.Generator,
    *,
    msrp: np.ndarray,
    segment: np.ndarray,
    ptype: np.ndarray,
    amount: np.ndarray,
    fleet: np.ndarray,
    years: np.ndarray,
) -> dict[str, np.ndarray]:
    """Price, financing and trade-in of each sale, consistent with its program
    (``ptype`` is an index into INCENTIVE_TYPES, -1 for none)."""
    n = len(msrp)
    apr_t, lease_t = INCENTIVE_TYPES.index("apr_subsidy"), INCENTIVE_TYPES.index("lease_subsidy")
    cash_like = np.isin(ptype, [INCENTIVE_TYPES.index(t) for t in ("cash_rebate", "loyalty", "conquest")])
    dealer_cash = ptype == INCENTIVE_TYPES.index("dealer_cash")
    mix = SEGMENT_FINANCING[segment]
    mix = np.where(fleet[:, None], np.array([0.6, 0.4, 0.0]), mix)
    fin = (rng.random(n)[:, None] > np.cumsum(mix, axis=1)[:, :2]).sum(axis=1)
    fin = np.where(ptype == apr_t, 1, np.where(ptype == lease_t, 2, fin))

    apr = np.full(n, np.nan)
    term = np.full(n, -1, dtype=np.int32)
    is_fin, is_lease = fin == 1, fin == 2
    market = np.clip(7.2 - 0.5 * years + rng.normal(0, 1.6, n), 1.9, 15.9)
    subsidized = np.array([0.0, 0.9, 1.9, 2.9])[rng.choice(4, n, p=[0.3, 0.25, 0.25, 0.2])]
    apr = np.where(is_fin, np.where(ptype == apr_t, subsidized, market), apr)
    lease_rate = np.clip(5.5 - 0.3 * years + rng.normal(0, 0.8, n), 2.0, 9.0)
    lease_sub = np.array([0.9, 1.5, 1.9, 2.5])[rng.integers(0, 4, n)]
    apr = np.where(is_lease, np.where(ptype == lease_t, lease_sub, lease_rate), apr)
    apr = np.round(apr, 2)
    fin_terms = np.array([36, 48, 60, 72, 84])[rng.choice(5, n, p=[0.08, 0.14, 0.36, 0.32, 0.10])]
    sub_terms = np.array([36, 48, 60])[rng.choice(3, n, p=[0.3, 0.4, 0.3])]
    lease_terms = np.array([24, 36, 39, 48])[rng.choice(4, n, p=[0.15, 0.6, 0.15, 0.1])]
    term = np.where(is_fin, np.where(ptype == apr_t, sub_terms, fin_terms), term)
    term = np.where(is_lease, lease_terms, term).astype(np.int32)

    amt = np.nan_to_num(amount)
    price = msrp * (1 + np.clip(rng.normal(-0.02, 0.025, n), -0.10, 0.06))
    price = price - np.where(cash_like, amt, 0.0) - np.where(dealer_cash, amt * rng.uniform(0.3, 1.0, n), 0.0)
    price = np.round(price) + np.where(rng.random(n) < 0.1, rng.integers(0, 100, n) / 100, 0.0)
    trade_p = np.where(
        np.isin(ptype, [INCENTIVE_TYPES.index("loyalty"), INCENTIVE_TYPES.index("conquest")]), 0.85, 0.4
    )
    trade_p = np.where(fleet, 0.1, trade_p)
    trade = np.clip(np.round(np.exp(rng.normal(math.log(13_000), 0.55, n)) / 50) * 50, 300, 75_000)
    trade = np.where(rng.random(n) < trade_p, trade, np.nan)
    return {
        "sale_price": np.round(price, 2),
        "financing": fin,
        "apr": apr,
        "term_months": term,
        "trade_in_value": trade,
    }


def assign_programs(
    u: np.ndarray, sale_cell: np.ndarray, offer_cell: np.ndarray, offer_hi: np.ndarray
) -> np.ndarray:
    """Which offer each sale takes: offers are sorted by (cell, priority) and
    ``offer_hi`` is the cumulative take probability within the cell; returns the
    offer index or -1."""
    if len(offer_cell) == 0:
        return np.full(len(u), -1, dtype=np.int64)
    key = offer_cell.astype(np.float64) + offer_hi
    x = sale_cell.astype(np.float64) + u
    j = np.searchsorted(key, x, side="right")
    ok = j < len(key)
    jj = np.where(ok, j, 0)
    ok &= offer_cell[jj] == sale_cell
    return np.where(ok, jj, -1)


# --------------------------------------------------------------------------- the causal model


@dataclass
class _World:
    """Fixed entities and the demand arrays they imply (region level)."""

    region_idx: np.ndarray
    model_segment: np.ndarray  # per model, index into SEGMENTS
    msrp: np.ndarray
    margin: np.ndarray
    dealer_region: np.ndarray
    dealer_size: np.ndarray  # index into SIZE_CLASSES
    dealer_share: np.ndarray  # dealers x models: share of the region's units
    base: np.ndarray  # regions x models x weeks, unit scale
    region_response: np.ndarray  # incentive types x regions: price sensitivity
    level: np.ndarray  # regions x models: base without season, trend, inventory
    inventory_log: np.ndarray  # regions x models: the inventory AR(1) state in the last week


def _week_days() -> np.ndarray:
    return START_DAY + 7 * np.arange(N_WEEKS)


def _holiday_factor(week_start: date) -> float:
    days = [week_start + timedelta(d) for d in range(7)]
    factor = 1.0
    for d in days:
        if d.month == 2 and d.weekday() == 0 and 15 <= d.day <= 21:  # Presidents' Day
            factor = max(factor, 1.10)
        if d.month == 5 and d.weekday() == 0 and d.day >= 25:  # Memorial Day
            factor = max(factor, 1.15)
        if d.month == 7 and d.day == 4:
            factor = max(factor, 1.08)
        if d.month == 9 and d.weekday() == 0 and d.day <= 7:  # Labor Day
            factor = max(factor, 1.12)
        if d.month == 11 and d.weekday() == 4 and 23 <= d.day <= 29:  # Black Friday
            factor = max(factor, 1.15)
        if d.month == 12 and d.day >= 26:  # year-end clearance
            factor = max(factor, 1.20)
    return factor


def _seasonality(weeks: Sequence[int] | None = None) -> np.ndarray:
    """Segments x weeks (week indices from START_DATE, all N_WEEKS by
    default): month pattern, holiday weekends, segment tweaks."""
    idx = range(N_WEEKS) if weeks is None else weeks
    s = np.ones((len(SEGMENTS), len(idx)))
    for col, w in enumerate(idx):
        ws = START_DATE + timedelta(weeks=w)
        month = (ws + timedelta(days=3)).month
        f = MONTH_SEASON[month - 1] * _holiday_factor(ws)
        s[:, col] = f
        if month in (3, 4, 5):
            s[SEGMENTS.index("truck"), col] *= 1.08
        if month in (10, 11, 12):
            s[SEGMENTS.index("suv"), col] *= 1.06
        if month == 12:
            s[SEGMENTS.index("ev"), col] *= 1.10
    return s


def _trend(segment: np.ndarray, weeks: np.ndarray) -> np.ndarray:
    """Models x weeks: each segment's drift in logs per year."""
    years = np.asarray(weeks) * 7 / 365.25
    return np.exp(SEGMENT_TREND[segment][:, None] * years[None, :])


def _build_world(seed: int, n_dealers: int) -> _World:
    rng = stream(seed, "world")
    n_r, n_m = len(REGIONS), len(MODELS)
    seg = np.array([SEGMENTS.index(m[1]) for m in MODELS])
    msrp = np.array([m[2] for m in MODELS], dtype=np.float64)
    msrp = np.round(msrp * rng.uniform(0.97, 1.03, n_m) / 100) * 100 - 5  # e.g. 32,395
    margin = np.round(msrp * SEGMENT_MARGIN[seg] * rng.uniform(0.85, 1.15, n_m), 2)

    region_w = np.array([r[4] for r in REGIONS])
    # dealers per region: proportional to demand, at least 6 where possible
    floor = min(6, n_dealers // n_r)
    rest = n_dealers - floor * n_r
    quota = rest * region_w / region_w.sum()
    per = floor + np.floor(quota).astype(int)
    per[np.argsort(-(quota - np.floor(quota)))[: n_dealers - per.sum()]] += 1
    dealer_region = rng.permutation(np.repeat(np.arange(n_r), per))
    dealer_size = rng.choice(3, n_dealers, p=SIZE_PROB)
    size_w = SIZE_FACTOR[dealer_size] * np.exp(rng.normal(0, 0.2, n_dealers))
    pref = np.exp(rng.normal(0, 0.2, (n_dealers, n_m)))
    raw = size_w[:, None] * pref
    region_tot = np.zeros((n_r, n_m))
    np.add.at(region_tot, dealer_region, raw)
    share = raw / region_tot[dealer_region]

    affinity = REGION_AFFINITY * np.exp(rng.normal(0, 0.08, REGION_AFFINITY.shape))
    pop = SEGMENT_SHARE[seg] * np.exp(rng.normal(0, 0.3, n_m))
    season = _seasonality()[seg]  # models x weeks
    trend = _trend(seg, np.arange(N_WEEKS))
    # inventory: a slow AR(1) in logs per (region, model)
    rho, sigma = INVENTORY_RHO, INVENTORY_SIGMA
    x = np.empty((n_r, n_m, N_WEEKS))
    x[:, :, 0] = rng.normal(0, sigma / math.sqrt(1 - rho**2), (n_r, n_m))
    shocks = rng.normal(0, sigma, (n_r, n_m, N_WEEKS))
    for w in range(1, N_WEEKS):
        x[:, :, w] = rho * x[:, :, w - 1] + shocks[:, :, w]
    inventory = np.clip(np.exp(x), *INVENTORY_CLIP)
    level = region_w[:, None] * affinity[:, seg] * pop[None, :]
    base = level[:, :, None] * (season * trend)[None, :, :] * inventory
    sensitivity = np.exp(rng.normal(0, 0.15, n_r))
    region_response = sensitivity[None, :] * np.exp(rng.normal(0, 0.10, (len(INCENTIVE_TYPES), n_r)))
    return _World(
        region_idx=np.arange(n_r),
        model_segment=seg,
        msrp=msrp,
        margin=margin,
        dealer_region=dealer_region,
        dealer_size=dealer_size,
        dealer_share=share,
        base=base,
        region_response=region_response,
        level=level,
        inventory_log=x[:, :, -1],
    )


@dataclass
class _Programs:
    ptype: np.ndarray
    amount: np.ndarray
    start_w: np.ndarray
    end_w: np.ndarray
    elig: np.ndarray  # programs x regions x models
    budget_factor: np.ndarray  # NaN: no budget


PROGRAMS_PER_WEEK = 60 / (N_WEEKS - 4)  # about how often the simulated dealer group starts a program
PROGRAM_WEEKS = (4, 14)  # a program runs this many weeks (the upper bound excluded)


def program_scope(
    rng: np.random.Generator, ptype: int, segment: np.ndarray, msrp: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """Where a program of type ``ptype`` is offered (regions mask, models mask
    over ``segment``/``msrp``) and its amount: one law for the generated
    history and for the weeks ``autoroi mutate`` adds."""
    supers = sorted({r[1] for r in REGIONS})
    super_of = np.array([supers.index(r[1]) for r in REGIONS])
    n_r, n_m = len(REGIONS), len(segment)
    kind = rng.random()
    if kind < 0.35:
        regions = np.ones(n_r, dtype=bool)
    elif kind < 0.70:
        regions = super_of == rng.integers(0, len(supers))
    else:
        regions = np.zeros(n_r, dtype=bool)
        regions[rng.choice(n_r, int(rng.integers(1, 4)), replace=False)] = True
    t = INCENTIVE_TYPES[ptype]
    kind = rng.random()
    all_models = 0.6 if t in ("loyalty", "conquest") else 0.15
    if kind < all_models:
        models = np.ones(n_m, dtype=bool)
    elif kind < all_models + (1 - all_models) * 0.6:
        models = segment == rng.integers(0, len(SEGMENTS))
    else:
        models = np.zeros(n_m, dtype=bool)
        models[rng.choice(n_m, int(rng.integers(1, 5)), replace=False)] = True
    lo, hi = INCENTIVES[t].amount
    raw = rng.uniform(lo, hi) * (msrp[models].mean() if t == "cash_rebate" and models.any() else 1.0)
    return regions, models, max(250.0, round(raw / 250) * 250)


def _build_programs(seed: int, world: _World) -> _Programs:
    rng = stream(seed, "programs")
    n_r, n_m = world.base.shape[:2]
    n_p = int(rng.integers(54, 67))
    weights = np.array([INCENTIVES[t].weight for t in INCENTIVE_TYPES])
    ptype = rng.choice(len(INCENTIVE_TYPES), n_p, p=weights / weights.sum())
    start = np.sort(rng.integers(0, N_WEEKS - 4, n_p))
    end = np.minimum(start + rng.integers(*PROGRAM_WEEKS, n_p) - 1, N_WEEKS - 1)
    elig = np.zeros((n_p, n_r, n_m), dtype=bool)
    amount = np.zeros(n_p)
    for p in range(n_p):
        regions, models, amount[p] = program_scope(rng, int(ptype[p]), world.model_segment, world.msrp)
        elig[p] = regions[:, None] & models[None, :]
    budget = np.where(rng.random(n_p) < 0.25, np.nan, rng.uniform(0.8, 1.6, n_p))
    return _Programs(ptype, amount, start, end, elig, budget)


@dataclass
class _Truth:
    lam: np.ndarray  # regions x models x weeks: expected units with everything
    rows: dict[str, np.ndarray]  # truth columns (before names are attached)
    offer_cell: np.ndarray  # per offer, sorted by (cell, priority)
    offer_program: np.ndarray
    offer_hi: np.ndarray
    expected_under: np.ndarray  # per program
    factor: float  # expected units per unit of base demand (n_sales over the world's expected total)


_SPEC = {  # per incentive type, in INCENTIVE_TYPES order
    "max_lift": np.array([INCENTIVES[t].max_lift for t in INCENTIVE_TYPES]),
    "curvature": np.array([INCENTIVES[t].curvature for t in INCENTIVE_TYPES]),
    "pull_forward": np.array([INCENTIVES[t].pull_forward for t in INCENTIVE_TYPES]),
    "uptake": np.array([INCENTIVES[t].uptake for t in INCENTIVE_TYPES]),
    "segment_response": np.array([INCENTIVES[t].segment_response for t in INCENTIVE_TYPES]),  # x segments
}


def spec_of(name: str, types: np.ndarray) -> np.ndarray:
    """One ``IncentiveSpec`` field for an array of type indices."""
    return _SPEC[name][types]


def incentive_lift(
    world: _World, types: np.ndarray, regions: np.ndarray, models: np.ndarray, amount: np.ndarray
) -> np.ndarray:
    """The causal model's lift of an incentive (broadcastable index arrays):
    ``max_lift x segment_response x region_response x (1 - exp(-k x amount / msrp))``."""
    depth = amount / world.msrp[models]
    return (
        spec_of("max_lift", types)
        * _SPEC["segment_response"][types, world.model_segment[models]]
        * world.region_response[types, regions]
        * (1 - np.exp(-spec_of("curvature", types) * depth))
    )


def _truth(world: _World, progs: _Programs, n_sales: int) -> _Truth:
    """Expected units with and without each program, from the same arrays the
    sales are drawn from."""
    base = world.base
    n_r, n_m, n_w = base.shape
    n_p = len(progs.ptype)
    specs = [INCENTIVES[INCENTIVE_TYPES[t]] for t in progs.ptype]
    active = np.zeros((n_p, n_w), dtype=bool)
    for p in range(n_p):
        active[p, progs.start_w[p] : progs.end_w[p] + 1] = True
    t = progs.ptype[:, None, None]
    lift = (
        incentive_lift(world, t, np.arange(n_r)[None, :, None], np.arange(n_m)[None, None, :],
                       progs.amount[:, None, None])
        * progs.elig
    )  # programs x regions x models  # fmt: skip
    L = lift[:, :, :, None] * active[:, None, None, :]
    F = np.prod(1 + L, axis=0)
    E = base[None] * F[None] / (1 + L) * L  # extra units that each program brings, before pull-forward
    tot_e = E.sum(axis=3)
    contrib = np.zeros_like(E)
    tail = np.zeros((n_p, n_r, n_m))
    phi = np.array([s.pull_forward for s in specs])
    for p in range(n_p):
        lost = phi[p] * tot_e[p]
        for j, k in enumerate(PULL_FORWARD_KERNEL):
            w = progs.end_w[p] + 1 + j
            if w < n_w:
                contrib[p, :, :, w] += lost * k
            else:
                tail[p] += lost * k  # lost beyond the horizon: still expected, just not observed
    d_raw = contrib.sum(axis=0)
    cap = DIP_CAP * base
    scale = np.where(d_raw > cap, cap / np.where(d_raw > 0, d_raw, 1), 1.0)
    realized = (contrib * scale[None]).sum(axis=3) + tail
    pf = E * np.where(tot_e > 0, realized / np.where(tot_e > 0, tot_e, 1), 0.0)[..., None]
    lam = base * F - d_raw * scale

    # who takes which program: the buyers a program brought in take it (the
    # extra units of overlapping programs split by their share of log F); the
    # other buyers take, in order of amount, each program's uptake share of
    # those not yet taken
    on = progs.elig[:, :, :, None] & active[:, None, None, :]
    log_l = np.log1p(L)
    sum_log = log_l.sum(axis=0)
    extra = base * (F - 1)
    brought = np.where(on, extra[None] * log_l / np.where(sum_log > 0, sum_log, 1)[None], 0.0)
    regular = base - d_raw * scale  # buyers who would have come anyway, less those pulled forward
    uptake = np.array([s.uptake for s in specs])
    order = np.lexsort((np.arange(n_p), -progs.amount))
    rank = np.empty(n_p, dtype=np.int64)
    rank[order] = np.arange(n_p)
    taken = np.zeros_like(E)
    remaining = np.ones_like(lam)
    for p in order:
        share = np.where(on[p], uptake[p], 0.0)
        taken[p] = brought[p] + regular * share * remaining
        remaining = remaining * (1 - share)
    pi = taken / lam[None]

    factor = n_sales / lam.sum()
    lam, E, pf = lam * factor, E * factor, pf * factor
    under = lam[None] * pi

    p_i, r_i, m_i, w_i = np.nonzero(on)
    with_ = lam[r_i, m_i, w_i]
    e = E[p_i, r_i, m_i, w_i]
    pfu = pf[p_i, r_i, m_i, w_i]
    und = under[p_i, r_i, m_i, w_i]
    amt = progs.amount[p_i]
    margin = world.margin[m_i]
    inc = e - pfu
    cost = amt * und
    profit = inc * margin
    rows = {
        "p": p_i,
        "r": r_i,
        "m": m_i,
        "w": w_i,
        "incentive_amount": amt,
        "units_with": with_,
        "units_without": with_ - e,
        "pull_forward_units": pfu,
        "incremental_units": inc,
        "unit_margin": margin,
        "units_under_incentive": und,
        "incentive_cost": cost,
        "incremental_profit": profit,
        "roi": np.where(cost > 0, (profit - cost) / np.where(cost > 0, cost, 1), 0.0),
    }
    cell = (r_i * n_m + m_i) * n_w + w_i
    o = np.lexsort((rank[p_i], cell))
    cell_o, prob_o = cell[o], pi[p_i, r_i, m_i, w_i][o]
    hi = np.cumsum(prob_o)
    first = np.r_[True, cell_o[1:] != cell_o[:-1]]
    group_start = np.maximum.accumulate(np.where(first, np.arange(len(o)), 0))
    hi = hi - (hi - prob_o)[group_start]
    expected_under = np.bincount(p_i, weights=und, minlength=n_p)
    return _Truth(lam, rows, cell_o, p_i[o], hi, expected_under, float(factor))


# --------------------------------------------------------------------------- tables


def _ts(us: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(us, dtype=np.int64), pa.int64()).cast(pa.timestamp("us", tz="UTC"))


def _dates(days: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(days, dtype=np.int32), pa.int32()).cast(pa.date32())


def _table(name: str, cols: dict[str, pa.Array | np.ndarray]) -> pa.Table:
    sch = arrow_schema(schema.metadata.tables[name])
    arrays = []
    for f in sch:
        v = cols[f.name]
        if not isinstance(v, pa.Array | pa.ChunkedArray):
            v = pa.array(v)
        arrays.append(v.cast(f.type) if v.type != f.type else v)
    return pa.Table.from_arrays(arrays, schema=sch)


def _day_us(days: np.ndarray | int) -> np.ndarray:
    return np.asarray(days, dtype=np.int64) * US_PER_DAY


def simulate(seed: int, *, sales_rows: int | None = None, scale: str = "small") -> SourceData:
    """The whole world for ``seed``: tables in load order and the truth."""
    seed = check_seed(seed)
    preset, n_sales = resolve_scale(scale, sales_rows)
    n_customers = max(MIN_CUSTOMERS, n_sales // 4)
    pools = build_pools(seed)
    world = _build_world(seed, preset.dealers)
    progs = _build_programs(seed, world)
    truth = _truth(world, progs, n_sales)
    n_r, n_m, n_w = world.base.shape
    n_d = len(world.dealer_region)
    log.info(
        "simulating seed=%d: %d sales, %d dealers, %d customers, %d programs",
        seed,
        n_sales,
        n_d,
        n_customers,
        len(progs.ptype),
    )

    # ---- units per (dealer, model, week): gamma-Poisson around the expectation
    rng = stream(seed, "units")
    lam_d = truth.lam[world.dealer_region] * world.dealer_share[:, :, None]  # dealers x models x weeks
    flat = lam_d.ravel()
    counts = rng.poisson(flat * rng.gamma(DISPERSION, 1 / DISPERSION, flat.size))
    diff = n_sales - int(counts.sum())
    if diff > 0:  # top up in proportion to the expected rates
        counts += rng.multinomial(diff, flat / flat.sum())
    elif diff < 0:  # trim units at random
        units = np.repeat(np.arange(flat.size), counts)
        drop = rng.choice(units.size, -diff, replace=False)
        counts -= np.bincount(units[drop], minlength=flat.size)
    cell = np.repeat(np.arange(flat.size), counts)
    d_i, rem = np.divmod(cell, n_m * n_w)
    m_i, w_i = np.divmod(rem, n_w)
    r_i = world.dealer_region[d_i]

    # ---- when: weekday and hour of business, in UTC, sorted into serial keys
    dow = rng.choice(7, n_sales, p=[0.14, 0.13, 0.13, 0.14, 0.16, 0.22, 0.08])
    sale_day = START_DAY + 7 * w_i + dow
    local_hour = 9 + 11 * rng.beta(2, 2, n_sales)
    offset = np.array([r[2] for r in REGIONS])[r_i]
    created = _day_us(sale_day) + ((local_hour + offset) * US_PER_HOUR).astype(np.int64)
    order = np.lexsort((created, sale_day))
    d_i, m_i, w_i, r_i, sale_day, created = (a[order] for a in (d_i, m_i, w_i, r_i, sale_day, created))
    sale_id = np.arange(1, n_sales + 1, dtype=np.int64)
    now = int(created.max())

    # ---- which program each sale was made under
    rng = stream(seed, "sales")
    sale_cell = (r_i * n_m + m_i) * n_w + w_i
    offer = assign_programs(rng.random(n_sales), sale_cell, truth.offer_cell, truth.offer_hi)
    prog = np.where(offer >= 0, truth.offer_program[np.maximum(offer, 0)], -1)
    ptype = np.where(prog >= 0, progs.ptype[np.maximum(prog, 0)], -1)
    amount = np.where(prog >= 0, progs.amount[np.maximum(prog, 0)], np.nan)
    fleet = rng.random(n_sales) < 0.03
    years = (sale_day - START_DAY) / 365.25
    terms = deal_terms(
        rng,
        msrp=world.msrp[m_i],
        segment=world.model_segment[m_i],
        ptype=ptype,
        amount=amount,
        fleet=fleet,
        years=years,
    )
    sale_year = (sale_day.astype("datetime64[D]").astype("datetime64[Y]").astype(int) + 1970).astype(np.int64)
    sale_month = sale_day.astype("datetime64[D]").astype("datetime64[M]").astype(int) % 12 + 1
    model_year = sale_year + (sale_month >= 7) - (rng.random(n_sales) < 0.05)
    vin = make_vins(rng, sale_id, m_i + 1, model_year)
    # most rows are final when entered; some are finished hours later, some corrected weeks later
    late = rng.random(n_sales)
    updated = created.copy()
    paperwork = late < 0.15
    updated[paperwork] += (rng.uniform(0.1, 6, paperwork.sum()) * US_PER_HOUR).astype(np.int64)
    corrected = late > 0.96
    updated[corrected] += (rng.uniform(1, 45, corrected.sum()) * US_PER_DAY).astype(np.int64)
    updated = np.maximum(created, np.minimum(updated, now))

    # ---- customers: a propensity to buy, fleet buyers buy many
    rng = stream(seed, "customers")
    region_sales = np.bincount(r_i, minlength=n_r).astype(float) + 1
    cust_region = rng.choice(n_r, n_customers, p=region_sales / region_sales.sum())
    propensity = rng.gamma(0.6, 1.0, n_customers)
    is_fleet_buyer = rng.random(n_customers) < 0.005
    is_fleet_buyer[rng.integers(0, n_customers)] = True
    propensity[is_fleet_buyer] = 0.0
    c_order = np.lexsort((np.arange(n_customers), cust_region))
    cum = np.cumsum(propensity[c_order])
    region_lo = np.searchsorted(cust_region[c_order], np.arange(n_r), side="left")
    region_hi = np.searchsorted(cust_region[c_order], np.arange(n_r), side="right")
    cum_lo = np.where(region_lo > 0, cum[np.maximum(region_lo - 1, 0)], 0.0)
    cum_hi = cum[np.maximum(region_hi - 1, 0)]
    buy_region = np.where(rng.random(n_sales) < 0.92, r_i, rng.integers(0, n_r, n_sales))
    target = cum_lo[buy_region] + rng.random(n_sales) * (cum_hi[buy_region] - cum_lo[buy_region])
    pick = np.clip(
        np.searchsorted(cum, target, side="right"), region_lo[buy_region], region_hi[buy_region] - 1
    )
    cust_of_sale = c_order[pick]
    fleet_ids = np.flatnonzero(is_fleet_buyer)
    cust_of_sale[fleet] = fleet_ids[rng.integers(0, len(fleet_ids), int(fleet.sum()))]
    customer_id = cust_of_sale.astype(np.int64) + 1

    sales = _table(
        "sales",
        {
            "sale_id": sale_id,
            "dealer_id": d_i + 1,
            "customer_id": customer_id,
            "model_id": m_i + 1,
            "vin": vin,
            "sale_date": _dates(sale_day),
            "sale_price": terms["sale_price"],
            "program_id": pa.array(prog + 1, mask=prog < 0, type=pa.int32()),
            "incentive_amount": pa.array(amount, mask=prog < 0, type=pa.float64()),
            "financing_type": pa.array(
                np.array(FINANCING_TYPES, dtype=object)[terms["financing"]], pa.string()
            ),
            "apr": pa.array(terms["apr"], mask=np.isnan(terms["apr"]), type=pa.float64()),
            "term_months": pa.array(terms["term_months"], mask=terms["term_months"] < 0, type=pa.int32()),
            "trade_in_value": pa.array(
                terms["trade_in_value"], mask=np.isnan(terms["trade_in_value"]), type=pa.float64()
            ),
            "is_fleet": fleet,
            "created_at": _ts(created),
            "updated_at": _ts(updated),
        },
    )

    customers = _customers(seed, pools, n_customers, cust_region, customer_id, created, now)
    regions = _regions_table()
    dealers = _dealers(seed, pools, world, now)
    models = _models_table(world)
    programs, eligibility = _programs_tables(seed, world, progs, truth, now)
    truth_table = _truth_table(world, progs, truth)
    tables = {
        "regions": regions,
        "dealers": dealers,
        "customers": customers,
        "vehicle_models": models,
        "incentive_programs": programs,
        "program_eligibility": eligibility,
        "sales": sales,
    }
    return SourceData(
        seed=seed, scale=scale, tables={n: tables[n] for n in schema.TABLE_ORDER}, truth=truth_table
    )


def _regions_table() -> pa.Table:
    n = len(REGIONS)
    at = _day_us(START_DAY - 400) + 15 * US_PER_HOUR
    return _table(
        "regions",
        {
            "region_id": np.arange(1, n + 1),
            "name": [r[0] for r in REGIONS],
            "super_region": [r[1] for r in REGIONS],
            "updated_at": _ts(np.full(n, at)),
        },
    )


def _dealers(seed: int, pools: Pools, world: _World, now: int) -> pa.Table:
    rng = stream(seed, "dealers")
    n = len(world.dealer_region)
    people = make_people(rng, pools, n)
    addr = make_addresses(rng, pools, world.dealer_region)
    suffix = pa.array(rng.choice(np.array(DEALER_SUFFIXES, dtype=object), n), pa.string())
    by_city = rng.random(n) < 0.5
    name = pc.if_else(
        pa.array(by_city),
        pc.binary_join_element_wise(addr["city"], suffix, " "),
        pc.binary_join_element_wise(people["last_name"], suffix, " "),
    )
    slug = pa.array([ascii_slug(s)[:24] for s in name.to_pylist()], pa.string())
    owner_slug = pa.array(
        [
            f"{ascii_slug(f)}.{ascii_slug(la)}"
            for f, la in zip(people["first_name"].to_pylist(), people["last_name"].to_pylist(), strict=True)
        ],
        pa.string(),
    )
    email = pc.binary_join_element_wise(owner_slug, "@", slug, ".com", "")
    opened = rng.integers((date(1965, 1, 1) - EPOCH).days, (date(2021, 12, 31) - EPOCH).days, n)
    updated = (
        np.where(
            rng.random(n) < 0.3,
            _day_us(rng.integers(START_DAY, START_DAY + 7 * N_WEEKS, n)),
            _day_us(opened) + rng.integers(0, 365, n) * US_PER_DAY,
        )
        + 16 * US_PER_HOUR
    )
    return _table(
        "dealers",
        {
            "dealer_id": np.arange(1, n + 1),
            "region_id": world.dealer_region + 1,
            "name": name,
            "size_class": pa.array(np.array(SIZE_CLASSES, dtype=object)[world.dealer_size], pa.string()),
            "owner_first_name": people["first_name"],
            "owner_last_name": people["last_name"],
            "owner_email": _null_where(email, rng.random(n) < 0.05),
            "owner_phone": _null_where(people["phone"], rng.random(n) < 0.03),
            "street": addr["street"],
            "city": addr["city"],
            "zip": addr["zip"],
            "opened_on": _dates(opened),
            "updated_at": _ts(np.minimum(updated, now)),
        },
    )


def _customers(
    seed: int,
    pools: Pools,
    n: int,
    region: np.ndarray,
    customer_of_sale: np.ndarray,
    sale_created: np.ndarray,
    now: int,
) -> pa.Table:
    rng = stream(seed, "customer-pii")
    people = make_people(rng, pools, n)
    addr = make_addresses(rng, pools, region)
    # created before the first purchase (sales are in time order, so the first
    # occurrence is the earliest); prospects without a purchase at any time
    first_buy = np.full(n, -1, dtype=np.int64)
    ids, first_idx = np.unique(customer_of_sale, return_index=True)
    first_buy[ids - 1] = sale_created[first_idx]
    start_us = int(_day_us(START_DAY))
    legacy = rng.random(n) < 0.35
    created = np.where(
        first_buy >= 0,
        np.where(
            legacy,
            start_us - (rng.uniform(0, 8 * 365, n) * US_PER_DAY).astype(np.int64),
            first_buy - (rng.uniform(0, 60, n) * US_PER_DAY).astype(np.int64),
        ),
        start_us + (rng.uniform(-5 * 365, 7 * N_WEEKS, n) * US_PER_DAY).astype(np.int64),
    )
    created = np.where(first_buy >= 0, np.minimum(created, first_buy), np.minimum(created, now))
    changed = rng.random(n) < 0.2
    updated = np.where(changed, created + (rng.random(n) * (now - created)).astype(np.int64), created)
    age_days = np.clip(rng.normal(48, 15, n), 18, 92) * 365.25
    birth = (START_DAY - age_days).astype(np.int64)
    no_addr = rng.random(n) < 0.03
    return _table(
        "customers",
        {
            "customer_id": np.arange(1, n + 1, dtype=np.int64),
            "first_name": people["first_name"],
            "last_name": people["last_name"],
            "email": _null_where(people["email"], rng.random(n) < 0.12),
            "phone": _null_where(people["phone"], rng.random(n) < 0.07),
            "birth_date": pa.array(birth.astype(np.int32), mask=rng.random(n) < 0.15, type=pa.int32()).cast(
                pa.date32()
            ),
            "street": _null_where(addr["street"], no_addr),
            "city": _null_where(addr["city"], no_addr),
            "zip": _null_where(addr["zip"], no_addr),
            "region_id": region + 1,
            "created_at": _ts(created),
            "updated_at": _ts(updated),
        },
    )


def _models_table(world: _World) -> pa.Table:
    n = len(MODELS)
    launched = np.array([(m[3] - EPOCH).days for m in MODELS])
    return _table(
        "vehicle_models",
        {
            "model_id": np.arange(1, n + 1),
            "name": [m[0] for m in MODELS],
            "segment": [m[1] for m in MODELS],
            "msrp": world.msrp,
            "unit_margin": world.margin,
            "launched_on": _dates(launched),
            "updated_at": _ts(np.maximum(_day_us(launched), _day_us(START_DAY - 200)) + 14 * US_PER_HOUR),
        },
    )


def describe_program(ptype: str, models: list[str], regions: list[str], start: date) -> str:
    season = (
        "Winter",
        "Winter",
        "Spring",
        "Spring",
        "Spring",
        "Summer",
        "Summer",
        "Summer",
        "Fall",
        "Fall",
        "Fall",
        "Winter",
    )[start.month - 1]
    what = ptype.replace("_", " ").replace("apr", "APR")
    on = models[0] if len(models) == 1 else f"{len(models)} models"
    where = "national" if len(regions) == len(REGIONS) else ", ".join(regions)
    return f"{season} {start.year} {what} on {on} ({where})"[:256]


def program_code(ptype: str, start: date, program_id: int) -> str:
    return f"{INCENTIVES[ptype].abbr}-{start.year % 100:02d}{program_id:03d}"


def _programs_tables(
    seed: int, world: _World, progs: _Programs, truth: _Truth, now: int
) -> tuple[pa.Table, pa.Table]:
    rng = stream(seed, "program-rows")
    n_p = len(progs.ptype)
    start_day = START_DAY + 7 * progs.start_w
    end_day = START_DAY + 7 * progs.end_w + 6
    announced = (
        _day_us(start_day) - (rng.uniform(7, 28, n_p) * US_PER_DAY).astype(np.int64) + 15 * US_PER_HOUR
    )
    revised = rng.random(n_p) < 0.2
    updated = np.where(
        revised,
        _day_us(start_day)
        + (rng.uniform(0, 1, n_p) * (end_day - start_day) * US_PER_DAY).astype(np.int64)
        + 17 * US_PER_HOUR,
        announced,
    )
    updated = np.maximum(announced, np.minimum(updated, now))
    budget = np.round(progs.amount * truth.expected_under * progs.budget_factor / 10_000) * 10_000
    budget = np.where(np.isnan(budget), np.nan, np.maximum(budget, 10_000))
    names = [m[0] for m in MODELS]
    codes, descs = [], []
    elig_prog, elig_region, elig_model = [], [], []
    for p in range(n_p):
        t = INCENTIVE_TYPES[progs.ptype[p]]
        s = START_DATE + timedelta(weeks=int(progs.start_w[p]))
        r_idx, m_idx = np.nonzero(progs.elig[p])
        codes.append(program_code(t, s, p + 1))
        descs.append(
            describe_program(
                t, [names[m] for m in np.unique(m_idx)], [REGIONS[r][0] for r in np.unique(r_idx)], s
            )
        )
        elig_prog.append(np.full(len(r_idx), p))
        elig_region.append(r_idx)
        elig_model.append(m_idx)
    programs = _table(
        "incentive_programs",
        {
            "program_id": np.arange(1, n_p + 1),
            "code": codes,
            "incentive_type": [INCENTIVE_TYPES[t] for t in progs.ptype],
            "amount": progs.amount,
            "start_date": _dates(start_day),
            "end_date": _dates(end_day),
            "budget": pa.array(budget, mask=np.isnan(budget), type=pa.float64()),
            "description": descs,
            "updated_at": _ts(updated),
        },
    )
    ep = np.concatenate(elig_prog)
    eligibility = _table(
        "program_eligibility",
        {
            "eligibility_id": np.arange(1, len(ep) + 1),
            "program_id": ep + 1,
            "region_id": np.concatenate(elig_region) + 1,
            "model_id": np.concatenate(elig_model) + 1,
            "updated_at": _ts(announced[ep]),
        },
    )
    return programs, eligibility


def _truth_table(world: _World, progs: _Programs, truth: _Truth) -> pa.Table:
    r = truth.rows
    p, ri, mi, wi = r["p"], r["r"], r["m"], r["w"]
    o = np.lexsort((wi, mi, ri, p))
    obj = np.array
    cols: dict[str, pa.Array] = {
        "program_id": pa.array((p + 1)[o], pa.int32()),
        "incentive_type": pa.array(obj(INCENTIVE_TYPES, dtype=object)[progs.ptype[p]][o], pa.string()),
        "region": pa.array(obj([x[0] for x in REGIONS], dtype=object)[ri][o], pa.string()),
        "region_id": pa.array((ri + 1)[o], pa.int32()),
        "vehicle_model": pa.array(obj([x[0] for x in MODELS], dtype=object)[mi][o], pa.string()),
        "model_id": pa.array((mi + 1)[o], pa.int32()),
        "segment": pa.array(obj(SEGMENTS, dtype=object)[world.model_segment[mi]][o], pa.string()),
        "week_start": _dates((START_DAY + 7 * wi)[o]),
    }
    for name in TRUTH_SCHEMA.names[8:]:
        cols[name] = pa.array(np.asarray(r[name], dtype=np.float64)[o], pa.float64())
    return pa.Table.from_arrays([cols[n] for n in TRUTH_SCHEMA.names], schema=TRUTH_SCHEMA)
