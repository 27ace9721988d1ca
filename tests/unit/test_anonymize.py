"""Anonymization: allow-list (fail closed), treatments, keyed pseudonyms, key loading."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from autoroi.anonymize import (
    Pseudonymizer,
    age_band_labels,
    age_bands,
    anonymize_tables,
    load_hmac_key,
    zip3,
)
from autoroi.config import DEFAULT_ALLOW_LIST, AnonymizeConfig
from autoroi.errors import AnonymizationError
from autoroi.source.schema import DIRECT_IDENTIFIERS
from autoroi.source.simulator import simulate

KEY = b"unit-test-key-0123456789abcdefghijklmnop"
OTHER_KEY = b"another-unit-test-key-0123456789abcdefgh"


@pytest.fixture(scope="module")
def raw() -> dict[str, pa.Table]:
    return simulate(11, sales_rows=5_000).tables


@pytest.fixture(scope="module")
def curated(raw):
    return anonymize_tables(raw, AnonymizeConfig(), KEY)


# --------------------------------------------------------------------------- allow-list


def test_output_columns_are_exactly_the_allowed_ones_in_input_order(raw, curated):
    out, report = curated
    assert sorted(out) == sorted(DEFAULT_ALLOW_LIST)
    for name, table in out.items():
        allowed = DEFAULT_ALLOW_LIST[name]
        assert table.column_names == [c for c in raw[name].column_names if c in allowed]
        assert table.num_rows == raw[name].num_rows
        rep = report.table(name)
        assert rep.rows_in == rep.rows_out == raw[name].num_rows
        assert set(rep.kept) | set(rep.treated) == set(table.column_names)


def test_direct_identifiers_are_dropped_and_reported(raw, curated):
    out, report = curated
    for name, cols in DIRECT_IDENTIFIERS.items():
        assert not set(cols) & set(out[name].column_names)
        for col in cols:
            assert report.table(name).dropped[col] == "direct_identifier"
    assert report.table("customers").dropped["city"] == "not_allowed"
    assert report.table("incentive_programs").dropped["description"] == "not_allowed"
    assert report.new_columns == []
    assert report.identifiers_allowed == []


def test_a_new_source_column_is_dropped_until_allowed(raw):
    sales = raw["sales"].append_column("delivery_date", raw["sales"].column("sale_date"))
    customers = raw["customers"].append_column("loyalty_tier", pa.array(["gold"] * raw["customers"].num_rows))
    changed = {**raw, "sales": sales, "customers": customers}
    out, report = anonymize_tables(changed, AnonymizeConfig(), KEY)
    assert "delivery_date" not in out["sales"].column_names
    assert "loyalty_tier" not in out["customers"].column_names
    assert report.table("sales").dropped["delivery_date"] == "not_allowed"
    assert sorted(report.new_columns) == ["customers.loyalty_tier", "sales.delivery_date"]
    assert report.to_dict()["new_columns"] == report.new_columns

    cfg = AnonymizeConfig()
    cfg.allow["sales"]["delivery_date"] = "keep"
    out, report = anonymize_tables(changed, cfg, KEY)
    assert out["sales"].column("delivery_date").equals(sales.column("delivery_date"))
    assert report.new_columns == ["customers.loyalty_tier"]


def test_a_table_without_allow_list_entry_is_dropped_whole(raw):
    extra = pa.table({"note_id": [1, 2], "text": ["call back", "no answer"]})
    cfg = AnonymizeConfig()
    del cfg.allow["regions"]
    out, report = anonymize_tables({**raw, "crm_notes": extra}, cfg, KEY)
    assert "crm_notes" not in out and "regions" not in out
    assert report.dropped_tables == ["crm_notes", "regions"]
    missing = anonymize_tables({"sales": raw["sales"]}, AnonymizeConfig(), KEY)[1]
    assert "customers" in missing.missing_tables and "sales" not in missing.missing_tables


def test_allowed_columns_absent_from_the_input_are_reported(raw):
    cfg = AnonymizeConfig()
    cfg.allow["regions"]["population"] = "keep"
    _, report = anonymize_tables(raw, cfg, KEY)
    assert report.table("regions").missing == ["population"]


def test_keep_is_unchanged(raw, curated):
    out, _ = curated
    for col in ("sale_id", "sale_date", "sale_price", "financing_type", "updated_at"):
        assert out["sales"].column(col).equals(raw["sales"].column(col))
    assert out["sales"].schema.field("sale_date").type == pa.date32()  # day level, weeks come later
    assert out["vehicle_models"].equals(raw["vehicle_models"])


def test_allowing_a_direct_identifier_is_reported_for_the_scan_to_stop(raw):
    cfg = AnonymizeConfig()
    cfg.allow["customers"]["email"] = "keep"
    out, report = anonymize_tables(raw, cfg, KEY)
    assert "email" in out["customers"].column_names
    assert report.identifiers_allowed == ["customers.email"]


def test_report_is_json_and_holds_no_values(raw, curated):
    _, report = curated
    text = json.dumps(report.to_dict())
    doc = json.loads(text)
    assert doc["as_of"] == raw["sales"].column("sale_date").to_pylist()[-1].isoformat()
    assert {t["table"] for t in doc["tables"]} == set(DEFAULT_ALLOW_LIST)
    customers = raw["customers"]
    for col in ("first_name", "last_name", "email", "street"):
        for value in customers.column(col).drop_null().slice(0, 50).to_pylist():
            assert value not in text
    for value in raw["sales"].column("vin").slice(0, 50).to_pylist():
        assert value not in text


# --------------------------------------------------------------------------- pseudonyms


def test_pseudonym_is_hmac_sha256_of_column_and_value():
    expected = hmac.new(KEY, b"customer_id:42", hashlib.sha256).hexdigest()[:32]
    got = Pseudonymizer(KEY).pseudonyms("customer_id", pa.array([42, None, 42], pa.int64()))
    assert got.to_pylist() == [expected, None, expected]
    # the string form is hashed: "42" as text and 42 as a number are one id
    assert Pseudonymizer(KEY).pseudonyms("customer_id", pa.array(["42"])).to_pylist() == [expected]
    # namespaced by column: the same number in another key column is unrelated
    assert Pseudonymizer(KEY).pseudonyms("dealer_id", pa.array([42])).to_pylist() != [expected]


def test_pseudonyms_are_hex_of_32_characters(curated):
    out, _ = curated
    ids = out["customers"].column("customer_id")
    assert pc.all(pc.match_substring_regex(ids, r"^[0-9a-f]{32}$")).as_py()
    assert out["customers"].schema.field("customer_id").type == pa.string()


def test_same_key_same_pseudonyms_other_key_unrelated(raw, curated):
    out, _ = curated
    again, _ = anonymize_tables(raw, AnonymizeConfig(), KEY)
    for name in out:
        assert again[name].equals(out[name])
    other, _ = anonymize_tables(raw, AnonymizeConfig(), OTHER_KEY)
    for name, col in (("sales", "customer_id"), ("sales", "dealer_id"), ("customers", "customer_id")):
        mine = set(out[name].column(col).to_pylist())
        theirs = set(other[name].column(col).to_pylist())
        assert not mine & theirs
    assert other["sales"].column("sale_price").equals(out["sales"].column("sale_price"))


def test_pseudonyms_join_across_sales_dealers_and_customers(raw, curated):
    out, _ = curated
    sales, customers, dealers = out["sales"], out["customers"], out["dealers"]
    assert set(sales.column("customer_id").to_pylist()) <= set(customers.column("customer_id").to_pylist())
    assert set(sales.column("dealer_id").to_pylist()) <= set(dealers.column("dealer_id").to_pylist())
    # one-to-one: the mapping keeps every distinction and adds none
    raw_ids = raw["sales"].column("customer_id").to_pylist()
    pairs = set(zip(raw_ids, sales.column("customer_id").to_pylist(), strict=True))
    assert len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs})
    # the joined region agrees with the raw join
    raw_join = raw["sales"].join(raw["customers"].select(["customer_id", "region_id"]), "customer_id")
    cur_join = sales.join(customers.select(["customer_id", "region_id"]), "customer_id")
    assert sorted(raw_join.column("region_id").to_pylist()) == sorted(
        cur_join.column("region_id").to_pylist()
    )


def test_pseudonyms_over_chunked_columns_match_one_chunk():
    values = pa.chunked_array([[3, 1, 2], [2, None, 5], []], pa.int64())
    from autoroi.anonymize import pseudonymize_columns

    (chunked,) = pseudonymize_columns([("x", values)], Pseudonymizer(KEY))
    (flat,) = pseudonymize_columns([("x", pa.chunked_array([values.combine_chunks()]))], Pseudonymizer(KEY))
    assert chunked.to_pylist() == flat.to_pylist()
    assert chunked.to_pylist()[4] is None


# --------------------------------------------------------------------------- key


def test_key_from_environment(monkeypatch):
    monkeypatch.setenv("AUTOROI_HMAC_KEY", KEY.decode() + "\n")
    assert load_hmac_key(AnonymizeConfig()) == KEY


def test_key_from_mounted_file_wins(monkeypatch, tmp_path):
    path = tmp_path / "hmac-key"
    path.write_bytes(OTHER_KEY + b"\n")
    monkeypatch.setenv("AUTOROI_HMAC_KEY", KEY.decode())
    assert load_hmac_key(AnonymizeConfig(hmac_key_file=path)) == OTHER_KEY


def test_refuses_without_a_key(monkeypatch, tmp_path):
    monkeypatch.delenv("AUTOROI_HMAC_KEY", raising=False)
    with pytest.raises(AnonymizationError, match=r"AUTOROI_HMAC_KEY.*openssl rand -hex 32"):
        load_hmac_key(AnonymizeConfig())
    missing = tmp_path / "nope"
    with pytest.raises(AnonymizationError, match=str(missing)):
        load_hmac_key(AnonymizeConfig(hmac_key_file=missing))


def test_refuses_a_short_key_without_showing_it(monkeypatch):
    monkeypatch.setenv("MY_KEY", "short-secret-value")
    with pytest.raises(AnonymizationError) as err:
        load_hmac_key(AnonymizeConfig(hmac_key_env="MY_KEY"))
    assert "MY_KEY" in str(err.value) and "18 bytes" in str(err.value)
    assert "short-secret-value" not in str(err.value)
    with pytest.raises(AnonymizationError):
        anonymize_tables({}, AnonymizeConfig(), b"x" * 31)


# --------------------------------------------------------------------------- age bands


def test_age_band_labels():
    assert age_band_labels([18, 25, 35, 45, 55, 65, 75, 90]) == [
        "<18",
        "18-24",
        "25-34",
        "35-44",
        "45-54",
        "55-64",
        "65-74",
        "75-89",
        "90+",
    ]


def test_age_bands_at_birthdays_and_90_plus():
    as_of = dt.date(2024, 6, 15)
    births = pa.array(
        [
            dt.date(2006, 6, 15),  # 18 today
            dt.date(2006, 6, 16),  # 18 tomorrow
            dt.date(1999, 6, 15),  # 25 today
            dt.date(1934, 6, 16),  # 89
            dt.date(1934, 6, 15),  # 90 today
            dt.date(1901, 1, 1),  # 123
            None,
            dt.date(2030, 1, 1),  # after as_of
        ],
        pa.date32(),
    )
    got = age_bands(births, as_of, AnonymizeConfig().age_band_edges).to_pylist()
    assert got == ["18-24", "<18", "25-34", "75-89", "90+", "90+", None, "<18"]


def test_age_band_column_and_as_of_default_to_newest_sale(raw, curated):
    out, report = curated
    newest = pc.max(raw["sales"].column("sale_date")).as_py()
    assert report.as_of == newest
    bands = out["customers"].column("birth_date")
    assert set(bands.drop_null().to_pylist()) <= set(age_band_labels(AnonymizeConfig().age_band_edges))
    assert bands.null_count == raw["customers"].column("birth_date").null_count
    assert report.table("customers").treated["birth_date"] == "age_band"
    # an explicit as_of far ahead ages everyone into 90+
    far, rep = anonymize_tables(raw, AnonymizeConfig(), KEY, as_of=dt.date(2200, 1, 1))
    assert set(far["customers"].column("birth_date").drop_null().to_pylist()) == {"90+"}
    assert rep.as_of == dt.date(2200, 1, 1)


def test_age_band_needs_a_reference_date():
    people = {"customers": pa.table({"customer_id": [1], "birth_date": pa.array([dt.date(1980, 1, 1)])})}
    with pytest.raises(AnonymizationError, match="as_of"):
        anonymize_tables(people, AnonymizeConfig(), KEY)
    out, _ = anonymize_tables(people, AnonymizeConfig(), KEY, as_of=dt.date(2024, 1, 1))
    assert out["customers"].column("birth_date").to_pylist() == ["35-44"]


# --------------------------------------------------------------------------- ZIP3


def test_zip3_small_areas_and_invalid_values_become_000():
    zips = ["02134"] * 30 + ["94607-1234"] * 5 + [" 10001 "] * 20 + ["ABCDE", None]
    out, stats = zip3(pa.array(zips), min_count=20)
    values = out.to_pylist()
    assert values[:30] == ["021"] * 30
    assert values[30:35] == ["000"] * 5  # 5 customers < 20
    assert values[35:55] == ["100"] * 20  # exactly 20 is enough
    assert values[55:] == ["000", None]
    assert stats == {"areas": 3, "areas_suppressed": 1, "rows_suppressed": 5, "invalid": 1}


def test_zip3_of_integer_zips_keeps_leading_zeros():
    out, _ = zip3(pa.array([2134, 2134, 94607], pa.int64()), min_count=1)
    assert out.to_pylist() == ["021", "021", "946"]


def test_zip3_counts_are_reported(raw):
    cfg = AnonymizeConfig(zip3_min_customers=60)
    out, report = anonymize_tables(raw, cfg, KEY)
    (z,) = report.zip3
    assert (z.table, z.column, z.min_count) == ("customers", "zip", 60)
    counts = pc.value_counts(pc.utf8_slice_codeunits(raw["customers"].column("zip"), 0, 3)).to_pylist()
    small = [c for c in counts if c["values"] is not None and c["counts"] < 60]
    assert z.areas_suppressed == len(small) > 0
    assert z.rows_suppressed == sum(c["counts"] for c in small)
    zips = out["customers"].column("zip")
    assert pc.sum(pc.equal(zips, "000")).as_py() == z.rows_suppressed + z.invalid
    kept = pc.value_counts(zips).to_pylist()
    assert all(c["counts"] >= 60 for c in kept if c["values"] not in (None, "000"))
