import numpy as np
import pyarrow as pa
import pytest
import sqlalchemy as sa

from autoroi.errors import SchemaDriftError
from autoroi.replication.cdc import compare_schemas
from autoroi.replication.source import arrow_type, bucket_of, bucket_range


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


def test_buckets_match_sql_truncating_division():
    keys = np.array([-70000, -65537, -1, 0, 1, 65535, 65536, 131072 + 5], dtype=np.int64)
    width = 65536
    buckets = bucket_of(keys, width)
    assert list(buckets) == [int(k / width) for k in keys]  # C/SQL semantics: toward zero
    for k, b in zip(keys, buckets, strict=True):
        lo, hi = bucket_range(int(b), width)
        assert lo <= k < hi
