"""The PII-scan gate: patterns, identifier membership, reports without values."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from autoroi.anonymize import Pseudonymizer, anonymize_tables, collect_identifiers, scan_for_pii
from autoroi.anonymize.scan import identifier_columns, normalize
from autoroi.config import AnonymizeConfig
from autoroi.errors import PiiLeakError
from autoroi.source.simulator import simulate

KEY = b"unit-test-key-0123456789abcdefghijklmnop"

EMAILS = ["anna.kowalska@example.com", "j.smith42@mail.co.uk", "zoë@exämple.de"]
PHONES = [
    "(201) 555-0123",  # the simulator's three formats
    "201-555-0123",
    "+1 201 555 0123",
    "201.555.0123",
    "2015550123",
    "+12015550123",
    "+1-555-019-7788",
    "+44 20 7946 0958",
    "+33 1 23 45 67 89",
    "call 201 555 0123 after 5",
]
VINS = ["1AR3KX7P1RS123456", "2ARZZZ8M9PA000017"]
CLEAN = [
    "finance",
    "18-24",
    "90+",
    "021",
    "000",
    "2024-01-15",
    "2024-01-15T10:30:00+00:00",
    "CR-23001",
    "Forge 1500",
    "1ar3kx7p1rs123456",  # lower case: not the VIN pattern (case-sensitive)
    "1AR3KX7P1RS1234567",  # 18 characters
    "1AR3KX7P1RS12345I",  # I is not a VIN character
    "12345",
    "3.14159",
]


def _one(report, column, check):
    return [f.count for f in report.findings if f.column == column and f.check == check]


def test_each_pattern_hits():
    outputs = {
        "t": pa.table({"email": EMAILS}),
        "p": pa.table({"phone": PHONES}),
        "v": pa.table({"vin": VINS}),
    }
    report = scan_for_pii(outputs, collect_identifiers({}))
    assert _one(report, "email", "email") == [len(EMAILS)]
    assert _one(report, "phone", "phone") == [len(PHONES)]
    assert _one(report, "vin", "vin") == [len(VINS)]
    assert not report.ok
    assert {f.check for f in report.findings} == {"email", "phone", "vin"}


def test_clean_values_and_pseudonyms_do_not_hit():
    pseudonyms = Pseudonymizer(KEY).pseudonyms("customer_id", pa.array(range(20_000), pa.int64()))
    report = scan_for_pii(
        {"clean": pa.table({"v": CLEAN}), "ids": pa.table({"customer_id": pseudonyms})},
        collect_identifiers({}),
    )
    assert report.ok, report.findings
    assert report.columns_scanned == 2
    assert report.cells_scanned == len(CLEAN) + 20_000


def test_counts_are_cells_not_distinct_values():
    report = scan_for_pii(
        {"t": pa.table({"c": ["a@b.example"] * 7 + ["x"] * 3 + [None]})}, collect_identifiers({})
    )
    assert _one(report, "c", "email") == [7]


RAW = {
    "customers": pa.table(
        {
            "customer_id": [1, 2, 3],
            "first_name": ["Jane", "Aria", "Zoë"],
            "last_name": ["Doe", "West", "Łukasiewicz"],
            "email": ["jane@doe.example", None, "zoe@l.example"],
            "phone": ["555 0100", None, None],
            "street": ["12 Elm  Street", "1 Main St", None],
        }
    ),
    "dealers": pa.table(
        {
            "dealer_id": [1],
            "name": ["Northeast Motors"],
            "owner_first_name": ["Bob"],
            "owner_last_name": ["Small"],
            "owner_email": [None],
            "owner_phone": [None],
            "street": ["9 Dealer Way"],
            "size_class": ["small"],
        }
    ),
    "sales": pa.table({"sale_id": [1], "vin": ["1AR3KX7P1RS123456"], "financing_type": ["cash"]}),
    "regions": pa.table({"region_id": [1], "name": ["Northeast"], "super_region": ["West"]}),
    "vehicle_models": pa.table({"model_id": [1], "name": ["Aria"], "segment": ["luxury"]}),
}


def test_identifier_set_covers_every_value_normalized():
    ids = collect_identifiers(RAW)
    values = set(ids.values.to_pylist())
    for expected in ("jane", "doe", "zoë", "łukasiewicz", "jane@doe.example", "555 0100", "12 elm street"):
        assert expected in values
    assert "jane doe" in values and "bob small" in values  # full names
    assert "1ar3kx7p1rs123456" in values
    assert ids.sources["customers.email"] == 2
    assert ids.sources["sales.vin"] == 1


def test_catalog_values_are_not_identifiers():
    """Aria (first name / vehicle model), West (surname / super-region),
    Small (surname / size class): exempt, and counted."""
    ids = collect_identifiers(RAW)
    values = set(ids.values.to_pylist())
    assert not {"aria", "west", "small"} & values
    assert ids.exempt == 3
    catalog = {k: RAW[k] for k in ("regions", "vehicle_models")}
    catalog["dealers"] = RAW["dealers"].select(["dealer_id", "size_class"])
    assert scan_for_pii(catalog, ids).ok
    # without the exemption the same outputs would fail
    strict = collect_identifiers(RAW, vocabulary={})
    assert not scan_for_pii(catalog, strict).ok


def test_identifier_membership_hits_after_normalization():
    ids = collect_identifiers(RAW)
    out = pa.table(
        {
            "who": ["  JANE   doe ", "nobody", "ZOË"],
            "where": ["12 ELM STREET", "elsewhere", None],
            "vin_lower": ["1ar3kx7p1rs123456", "x", "y"],
        }
    )
    report = scan_for_pii({"out": out}, ids)
    assert _one(report, "who", "identifier") == [2]
    assert _one(report, "where", "identifier") == [1]
    assert _one(report, "vin_lower", "identifier") == [1]
    assert _one(report, "vin_lower", "vin") == []


def test_normalize():
    got = normalize(pa.array(["  A\tB  ", "x  y", "Ünïcode", None], pa.large_string())).to_pylist()
    assert got == ["a b", "x y", "ünïcode", None]


def test_dictionary_nested_and_binary_columns_are_scanned():
    ids = collect_identifiers(RAW)
    table = pa.table(
        {
            "dict": pa.array(["jane@doe.example", "x", "jane@doe.example"]).dictionary_encode(),
            "nested": pa.array([{"contact": {"phone": "(201) 555-0123"}}, None, {"contact": None}]),
            "tags": pa.array([["a", "Doe"], [], None]),
            "blob": pa.array([b"1AR3KX7P1RS123456", b"ok", None]),
            "bad_blob": pa.array([b"\xff\xfe", b"ok", None]),
            "count": [1, 2, 3],
        }
    )
    report = scan_for_pii({"t": table}, ids)
    cols = report.leaking_columns()
    assert cols["t.dict"] == {"email": 2, "identifier": 2}
    assert cols["t.nested.contact.phone"] == {"phone": 1}
    assert cols["t.tags[]"] == {"identifier": 1}
    assert cols["t.blob"] == {"vin": 1, "identifier": 1}
    assert report.unscanned == ["t.bad_blob"]


def test_report_and_error_name_columns_and_counts_never_values():
    ids = collect_identifiers(RAW)
    leaking = pa.table({"email": ["jane@doe.example", "zoe@l.example"], "vin": ["1AR3KX7P1RS123456", None]})
    report = scan_for_pii({"curated/customers": leaking}, ids)
    text = json.dumps(report.to_dict())
    with pytest.raises(PiiLeakError) as err:
        report.raise_if_leaking()
    message = str(err.value)
    assert "curated/customers.email (email: 2, identifier: 2)" in message
    assert "curated/customers.vin (vin: 1, identifier: 1)" in message
    for value in ["jane@doe.example", "zoe@l.example", "1AR3KX7P1RS123456", "1ar3kx7p1rs123456"]:
        assert value not in text
        assert value not in message
    assert json.loads(text)["ok"] is False


def test_identifier_columns_lists_what_to_read():
    cols = identifier_columns()
    assert {"first_name", "last_name", "email", "phone", "street"} <= set(cols["customers"])
    assert cols["sales"] == ["vin", "financing_type"]
    assert set(cols["regions"]) == {"name", "super_region"}


# --------------------------------------------------------------------------- on simulator data


@pytest.fixture(scope="module")
def world() -> dict[str, pa.Table]:
    return simulate(3, sales_rows=5_000).tables  # seed 3: names Aria, Small, West, Volta, Mesa occur


def test_default_allow_list_on_simulator_data_has_no_findings(world):
    curated, _ = anonymize_tables(world, AnonymizeConfig(), KEY)
    ids = collect_identifiers(world)
    report = scan_for_pii({f"curated/{k}": v for k, v in curated.items()}, ids)
    assert report.ok, report.leaking_columns()
    assert report.identifiers == len(ids) > 20_000
    report.raise_if_leaking()  # no exception


def test_the_raw_zone_itself_fails_the_scan(world):
    report = scan_for_pii({f"raw/{k}": v for k, v in world.items()}, collect_identifiers(world))
    leaking = report.leaking_columns()
    for col in ("first_name", "last_name", "email", "phone", "street"):
        assert f"raw/customers.{col}" in leaking
    assert leaking["raw/sales.vin"] == {"vin": 5_000, "identifier": 5_000}
    assert "raw/customers.city" not in leaking and "raw/regions.name" not in leaking


@pytest.mark.parametrize(
    ("table", "column", "checks"),
    [
        ("customers", "email", {"email", "identifier"}),
        ("customers", "phone", {"phone", "identifier"}),
        ("customers", "last_name", {"identifier"}),
        ("customers", "street", {"identifier"}),
        ("sales", "vin", {"vin", "identifier"}),
        ("dealers", "owner_phone", {"phone", "identifier"}),
    ],
)
def test_a_leaking_allow_list_fails(world, table, column, checks):
    cfg = AnonymizeConfig()
    cfg.allow[table][column] = "keep"
    curated, _ = anonymize_tables(world, cfg, KEY)
    report = scan_for_pii({f"curated/{k}": v for k, v in curated.items()}, collect_identifiers(world))
    assert set(report.leaking_columns()) == {f"curated/{table}.{column}"}
    assert set(report.leaking_columns()[f"curated/{table}.{column}"]) == checks
    with pytest.raises(PiiLeakError, match=f"curated/{table}.{column}"):
        report.raise_if_leaking()


def test_the_outputs_own_names_and_report_terms_are_not_identifiers():
    """A customer surnamed Sales does not make the table name "sales" a leak."""
    raw = {"customers": pa.table({"first_name": ["Ana"], "last_name": ["Sales"]})}
    ids = collect_identifiers(raw)
    assert "sales" in ids.values.to_pylist()
    report_table = pa.table({"key": ["table", "kept"], "value": ["sales", "region_id"]})
    outputs = {"curated/sales": pa.table({"region_id": [1]}), "curated/_report.json": report_table}
    assert scan_for_pii(outputs, ids).ok
    # the same word in a column of an output named otherwise is an identifier hit ...
    other = {"curated/orders": pa.table({"note": ["Sales"]})}
    assert not scan_for_pii(other, ids).ok
    # ... unless the caller says it is a report term
    assert scan_for_pii(other, ids, exempt_terms=["sales"]).ok


def test_keyed_identifiers_find_the_same_leaks_without_clear_text():
    """What the pipeline hands the scan: fingerprints keyed by the HMAC key.
    Same findings as the clear-text set; a wrong key matches nothing."""
    leaky = {
        "curated/customers": pa.table({"note": ["Jane Doe", "ok", "12 Elm Street"], "city": ["x", "y", "z"]}),
        "curated/sales": pa.table({"vin": ["1AR3KX7P1RS123456"]}),
    }
    clear = scan_for_pii(leaky, collect_identifiers(RAW))
    key = b"k" * 40
    keyed_ids = collect_identifiers(RAW).keyed(key)
    assert keyed_ids.is_keyed and keyed_ids.values.type == pa.uint64()
    assert not {"jane", "jane doe"} & {str(v) for v in keyed_ids.values.to_pylist()}
    keyed = scan_for_pii(leaky, keyed_ids, key=key)
    assert [(f.table, f.column, f.check, f.count) for f in keyed.findings] == [
        (f.table, f.column, f.check, f.count) for f in clear.findings
    ]
    assert any(f.check == "identifier" for f in keyed.findings)
    wrong = scan_for_pii(leaky, keyed_ids, key=b"w" * 40)
    assert not any(f.check == "identifier" for f in wrong.findings)
    with pytest.raises(ValueError, match="key"):
        scan_for_pii(leaky, keyed_ids)
