import numpy as np
import pyarrow as pa
import pytest
import sqlalchemy as sa

from autoroi.errors import SchemaDriftError
from autoroi.replication.cdc import compare_schemas
from autoroi.replication.source import (
    SourceReader,
    arrow_type,
    bucket_fingerprints,
    bucket_of,
    bucket_range,
    merge_fingerprints,
)


@pytest.mark.parametrize(
    ("sa_type", "dialect", "expected"),
    [
        (sa.Numeric(10, 2), "postgresql", pa.decimal128(10, 2)),
        (sa.DateTime(timezone=True), "postgresql", pa.timestamp("us", tz="UTC")),
        (sa.DateTime(), "postgresql", pa.timestamp("us")),
        (sa.DateTime(), "sqlite", pa.timestamp("us", tz="UTC")),
        (sa.Integer(), "postgresql", pa.int32()),
        (sa.Integer(), "sqlite", pa.int64()),
        (sa.BigInteger(), "postgresql", pa.int64()),
        (sa.Float(), "postgresql", pa.float64()),
        (sa.Date(), "sqlite", pa.date32()),
        (sa.Boolean(), "postgresql", pa.bool_()),
        (sa.String(10), "postgresql", pa.string()),
    ],
)
def test_types_stay_faithful(sa_type, dialect, expected):
    assert arrow_type(sa_type, dialect) == expected


def test_added_and_widened_columns_reload_and_incompatible_changes_stop():
    old = pa.schema([("id", pa.int32()), ("price", pa.decimal128(10, 2)), ("name", pa.string())])
    added, reload = compare_schemas("t", old, old.append(pa.field("extra", pa.date32())))
    assert added == ["extra"] and reload
    added, reload = compare_schemas("t", old, old.set(0, pa.field("id", pa.int64())))
    assert added == [] and reload
    assert compare_schemas("t", old, old) == ([], False)
    with pytest.raises(SchemaDriftError, match="'price' changed type"):
        compare_schemas("t", old, old.set(1, pa.field("price", pa.string())))
    with pytest.raises(SchemaDriftError, match="'name' was dropped"):
        compare_schemas("t", old, old.remove(2))


def test_buckets_are_floor_ranges_and_sql_agrees(tmp_path):
    keys = np.array([-70000, -65537, -65536, -1, 0, 1, 65535, 65536, 131072 + 5], dtype=np.int64)
    width = 65536
    buckets = bucket_of(keys, width)
    assert list(buckets) == [k // width for k in keys.tolist()]
    for k, b in zip(keys, buckets, strict=True):
        lo, hi = bucket_range(int(b), width)
        assert lo <= k < hi

    # the generic SQL path computes the same fingerprints as numpy, negatives included
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'k.db'}")
    md = sa.MetaData()
    t = sa.Table("t", md, sa.Column("id", sa.BigInteger, primary_key=True), sa.Column("v", sa.Integer))
    md.create_all(engine)
    with engine.begin() as c:
        c.execute(t.insert(), [{"id": int(k), "v": 0} for k in keys])
    with SourceReader(engine) as reader:
        st = reader.reflect("t")
        assert reader.bucket_stats(st, width) == bucket_fingerprints(keys, width)
        assert sorted(reader.keys_in_buckets(st, [-2, 0], width).tolist()) == [-70000, -65537, 0, 1, 65535]


def test_fingerprints_add_and_subtract():
    rng = np.random.default_rng(5)
    a = np.unique(rng.integers(-(10**6), 10**7, 5000))
    b = np.setdiff1d(np.unique(rng.integers(0, 10**7, 300)), a)
    both = np.concatenate([a, b])
    assert merge_fingerprints(
        bucket_fingerprints(a, 4096), bucket_fingerprints(b, 4096)
    ) == bucket_fingerprints(both, 4096)
    assert merge_fingerprints(bucket_fingerprints(both, 4096), bucket_fingerprints(b, 4096), sign=-1) == (
        bucket_fingerprints(a, 4096)
    )
    assert bucket_fingerprints(rng.permutation(both), 4096) == bucket_fingerprints(both, 4096)
