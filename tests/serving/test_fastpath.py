"""The model server's fast path (``autoroi.model.fastpath``) gives the numbers
of the reference ``RoiModel.predict``: over every incentive type, cells at
every cell level, weeks before, inside, at the end of and after the data,
amounts from 0 to the largest the server accepts; one scenario at a time (as
a batch-1 request) and in batches. What it does not cover goes to the
reference; a fast path that disagrees is not used; the server's
``--fast-path`` modes and its request-logging flags."""

from __future__ import annotations

import functools
import logging
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from autoroi.model import features as F
from autoroi.serving.validation import DEFAULT_MAX_AMOUNT, MAX_WEEK, MIN_WEEK, Vocabulary

pytestmark = pytest.mark.slow  # trains a small model

RTOL = 1e-5
NUMBERS = (
    "predicted_units",
    "baseline_units",
    "incremental_units",
    "incentive_cost",
    "incremental_profit",
    "roi",
    F.INCENTIVE_AMOUNT,
)


MERGED_WEEKS = slice(60, 70)


@functools.lru_cache(maxsize=1)
def multi_level_master() -> pd.DataFrame:
    """The tests' simulated master with cells at every level, as k-anonymity
    merges them: Northeast/Forge 1500 only inside East/truck
    (super_region_segment), Pacific/Volta inside West/Volta
    (super_region_model), Pacific/Kestrel inside Pacific/suv (region_segment),
    the rest at the finest level."""
    from tests.model_tables import simulated_master

    master, _ = simulated_master()
    m = master.copy()

    def merge(region: str, model: str, level: str, new_region: str, new_model: str) -> None:
        rows = (m[F.REGION] == region) & (m[F.VEHICLE_MODEL] == model)
        m.loc[rows, [F.REGION, F.VEHICLE_MODEL, F.CELL_LEVEL]] = [new_region, new_model, level]

    merge("Northeast", "Forge 1500", "super_region_segment", "East", "truck")
    merge("Pacific", "Volta", "super_region_model", "West", "Volta")
    merge("Pacific", "Kestrel", "region_segment", "Pacific", "suv")
    # and ten weeks of Northeast/Pico that k-anonymity merged into East/Pico with one more
    # member that sold, never published on its own (MERGED_WEEKS)
    m[F.FINE_CELLS] = np.where(m[F.CELL_LEVEL] == F.FINEST_LEVEL, 1, 2)
    weeks = sorted(m[F.WEEK].unique())[MERGED_WEEKS]
    rows = (m[F.REGION] == "Northeast") & (m[F.VEHICLE_MODEL] == "Pico") & m[F.WEEK].isin(weeks)
    m.loc[rows, [F.REGION, F.SUPER_REGION, F.CELL_LEVEL, F.FINE_CELLS]] = [
        "East",
        "East",
        "super_region_model",
        2,
    ]
    m.loc[rows, F.UNITS] = m.loc[rows, F.UNITS] + 3
    return m


@functools.lru_cache(maxsize=1)
def multi_level_model() -> Any:
    """The tests' trained network with the context of :func:`multi_level_master`."""
    from autoroi.model.artifact import RoiModel
    from tests.model_tables import trained_model

    base = trained_model()
    context = F.build_context(multi_level_master(), base.spec)
    return RoiModel(
        network=base.network,
        preprocessor=base.preprocessor,
        context=context,
        take_rates=dict(base.take_rates),
        uptake=dict(base.uptake),
        hyperparameters=dict(base.hyperparameters),
        version="multi-level",
        metadata=dict(base.metadata),
    )


def vocabulary(model: Any) -> Vocabulary:
    return Vocabulary.from_context(model.context, model.metadata.get("incentive_types_seen"))


@functools.lru_cache(maxsize=1)
def fast_multi() -> Any:
    from autoroi.model.fastpath import FastPredictor

    model = multi_level_model()
    return FastPredictor.build(model, pairs=vocabulary(model).pairs, first_week=MIN_WEEK, last_week=MAX_WEEK)


def monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def scenario_grid(model: Any) -> pd.DataFrame:
    """Every servable pair x weeks (long before, first, inside, last, the week
    after, long after) x every type the model scores x amounts."""
    vocab = vocabulary(model)
    ctx = model.context
    first, last = ctx[F.WEEK].min().date(), ctx[F.WEEK].max().date()
    weeks = [
        date(1990, 1, 1),
        monday(first) - timedelta(weeks=1),
        monday(first),
        monday(first + (last - first) / 2),
        monday(last) - timedelta(weeks=1),
        monday(last),
        monday(last) + timedelta(weeks=1),
        monday(last) + timedelta(weeks=60),
        date(2150, 6, 1) - timedelta(days=date(2150, 6, 1).weekday()),
    ]
    amounts = (0.0, 1.0, 1500.0, 12_345.67, DEFAULT_MAX_AMOUNT)
    rows = []
    for k, (region, vehicle_model) in enumerate(sorted(vocab.pairs)):
        for j, week in enumerate(weeks):
            for kind in vocab.incentive_types:
                if kind == F.NO_INCENTIVE:
                    rows.append((region, vehicle_model, week.isoformat(), kind, 0.0))
                else:
                    for amount in (amounts[(k + j) % len(amounts)], amounts[(k + j + 2) % len(amounts)]):
                        rows.append((region, vehicle_model, week.isoformat(), kind, amount))
    return pd.DataFrame.from_records(rows, columns=list(F.SCENARIO_FIELDS))


def assert_same(got: pd.DataFrame | dict[str, Any], want: pd.DataFrame) -> None:
    for c in want.columns:
        a, b = np.asarray(got[c]), want[c].to_numpy()
        if c in NUMBERS:
            np.testing.assert_allclose(
                a.astype(np.float64), b.astype(np.float64), rtol=RTOL, atol=1e-9, equal_nan=True, err_msg=c
            )
        else:
            assert [str(x) for x in a] == [str(x) for x in b], c


def columns(s: pd.DataFrame) -> tuple[list[Any], ...]:
    """A frame of scenarios as the server hands them to the fast path."""
    return (
        s[F.REGION].tolist(),
        s[F.VEHICLE_MODEL].tolist(),
        s[F.WEEK].tolist(),
        s[F.INCENTIVE_TYPE].tolist(),
        [float(x) for x in s[F.INCENTIVE_AMOUNT]],
    )


# --------------------------------------------------------------------------- parity


def test_the_grid_covers_every_level_type_and_week_kind() -> None:
    model = multi_level_model()
    want = model.predict(scenario_grid(model))
    assert set(want[F.CELL_LEVEL]) == set(F.CELL_LEVELS)
    assert set(want[F.INCENTIVE_TYPE]) == set(vocabulary(model).incentive_types)
    assert (want["incremental_units"] > 0).any() and want["roi"].isna().any()


def test_fast_path_gives_the_reference_numbers_in_a_batch() -> None:
    model, fast = multi_level_model(), fast_multi()
    s = scenario_grid(model)
    want = model.predict(s)
    got = fast.predict(*columns(s))  # the columns API the server calls: no fallback here
    assert_same(got, want)
    assert_same(fast.predict_frame(s), want)
    assert list(fast.predict_frame(s).columns) == list(want.columns)


def test_fast_path_gives_the_reference_numbers_one_scenario_at_a_time() -> None:
    model, fast = multi_level_model(), fast_multi()
    s = scenario_grid(model)
    rng = np.random.default_rng(5)
    for i in rng.choice(len(s), size=25, replace=False):
        one = s.iloc[[int(i)]].reset_index(drop=True)
        assert_same(fast.predict(*columns(one)), model.predict(one))


def test_a_merged_week_is_answered_by_its_coarser_row_scaled_to_the_cell() -> None:
    model, fast = multi_level_model(), fast_multi()
    ctx = model.context
    weeks = sorted(ctx.loc[(ctx[F.REGION] == "East") & (ctx[F.VEHICLE_MODEL] == "Pico"), F.WEEK].unique())
    week = pd.Timestamp(weeks[3]).date().isoformat()
    asked = {"region": "Northeast", "vehicle_model": "Pico", "week_start": week, "incentive_amount": 1500.0}
    s = pd.DataFrame(
        [
            {**asked, "incentive_type": "cash_rebate"},
            {**asked, "region": "East", "incentive_type": "cash_rebate"},  # the coarser row itself
        ]
    )
    want = model.predict(s)
    fine, row = want.iloc[0], want.iloc[1]
    assert (fine[F.CELL_LEVEL], fine[F.CONTEXT_REGION], fine[F.CONTEXT_MODEL]) == (
        "super_region_model",
        "East",
        "Pico",
    )
    # its share: its mean published units against those of the other member, which never was
    # published on its own and counts as the smallest known one (itself): one half
    ratio = fine["predicted_units"] / row["predicted_units"]
    assert ratio == pytest.approx(0.5)
    for c in ("baseline_units", "incremental_units", "incentive_cost", "incremental_profit"):
        assert fine[c] == pytest.approx(0.5 * row[c])
    assert fine["roi"] == pytest.approx(row["roi"])  # a share changes the money, not the ratio
    # a week it was published in is answered by itself
    own = model.predict(
        s.iloc[[0]].assign(week_start=pd.Timestamp(weeks[0] - pd.Timedelta(weeks=5)).date().isoformat())
    )
    assert own[F.CONTEXT_REGION].iloc[0] == "Northeast" and own[F.CELL_LEVEL].iloc[0] == "region_model"
    assert_same(fast.predict(*columns(s)), want)


@functools.lru_cache(maxsize=1)
def dip_model() -> Any:
    """A network with the ended-program features and their dip
    (``FeatureSpec(ended=True)``), trained on :func:`multi_level_master` with
    Northeast/Pico's merged weeks filled (``features.fill_merged_weeks``, its
    programs as the simulated master had them), a pull-forward share set."""
    from autoroi.model.train import train_model
    from tests.model_tables import TINY_HP, simulated_master

    master, _ = simulated_master()
    pico = master[(master[F.REGION] == "Northeast") & (master[F.VEHICLE_MODEL] == "Pico")]
    activity = pico[[F.REGION, F.VEHICLE_MODEL, F.WEEK, *F.INDICATORS.values(), *F.OFFERS.values()]]
    filled = F.fill_merged_weeks(multi_level_master(), activity)
    model = train_model(filled, TINY_HP, epochs=2, seed=3, members=2, spec=F.FeatureSpec(ended=True))
    model.pull_forward = dict.fromkeys(model.metadata["incentive_types_seen"], 0.2)
    return model


def test_a_model_with_the_dip_nets_the_pull_forward_and_the_fast_path_agrees() -> None:
    from autoroi.model.fastpath import FastPredictor

    model = dip_model()
    assert model.spec.ended and F.ENDED["cash_rebate"][0] in model.context.columns
    fast = FastPredictor.build(model, pairs=vocabulary(model).pairs, first_week=MIN_WEEK, last_week=MAX_WEEK)
    s = scenario_grid(model)
    want = model.predict(s)
    assert_same(fast.predict(*columns(s)), want)
    gross = want["predicted_units"] - want["baseline_units"]
    share = np.where(want[F.INCENTIVE_TYPE] == F.NO_INCENTIVE, 0.0, 0.2)
    np.testing.assert_allclose(want["incremental_units"], gross * (1 - share), rtol=1e-9, atol=1e-12)
    # a week k-anonymity merged is answered from the cell's own filled row, and says where it came from
    week = pd.Timestamp(sorted(multi_level_master()[F.WEEK].unique())[MERGED_WEEKS][3]).date().isoformat()
    one = pd.DataFrame([("Northeast", "Pico", week, "cash_rebate", 1500.0)], columns=list(F.SCENARIO_FIELDS))
    got = model.predict(one).iloc[0]
    assert (got[F.CELL_LEVEL], got[F.CONTEXT_REGION], got[F.CONTEXT_MODEL]) == (
        "super_region_model",
        "East",
        "Pico",
    )
    assert_same(fast.predict(*columns(one)), model.predict(one))


def test_fast_path_on_the_served_artifact(roi_artifact: Path) -> None:
    """The artifact the server tests load: batches of every size up to 300."""
    from autoroi.model.artifact import load_model
    from autoroi.model.fastpath import FastPredictor

    model = load_model(roi_artifact)
    fast = FastPredictor.build(model, pairs=vocabulary(model).pairs)
    s = scenario_grid(model)
    for n in (1, 2, 7, 64, 300):
        part = s.sample(n=n, random_state=n).reset_index(drop=True)
        assert_same(fast.predict(*columns(part)), model.predict(part))


# --------------------------------------------------------------------------- what it does not cover


def test_what_the_tables_do_not_hold_goes_to_the_reference() -> None:
    from autoroi.model.fastpath import FastPredictor, NotCovered

    model = multi_level_model()
    narrow = FastPredictor.build(
        model, first_week=date(2024, 1, 1), last_week=date(2027, 12, 31), verify=False
    )  # pairs: the context cells only
    s = scenario_grid(model)
    fallback_pair = s[(s[F.REGION] == "Pacific") & (s[F.VEHICLE_MODEL] == "Volta")]  # only via West/Volta
    old_week = s[s[F.WEEK] == "1990-01-01"]
    for part in (fallback_pair, old_week):
        with pytest.raises(NotCovered):
            narrow.predict(*columns(part))
        assert_same(narrow.predict_frame(part), model.predict(part))
    one = pd.DataFrame([("Northeast", "Pico", "2026-03-02", "cash_rebate", 900.0)], columns=s.columns)
    narrow.predict(*columns(one))  # covered
    with pytest.raises(NotCovered, match="YYYY-MM-DD"):
        narrow.predict(*columns(one.assign(week_start="2026/03/02")))
    # the reference still decides what is wrong
    bad = one.assign(region="Atlantis")
    with pytest.raises(F.ScenarioError) as e:
        narrow.predict_frame(bad)
    assert e.value.field == F.REGION
    with pytest.raises(NotCovered):
        narrow.predict(*columns(one.assign(incentive_type="none", incentive_amount=5.0)))


def test_a_fast_path_that_disagrees_is_refused() -> None:
    from autoroi.model.fastpath import FastPathUnavailable, FastPredictor

    model = multi_level_model()
    fast = FastPredictor.build(model, verify=False)
    fast.verify()  # agrees
    fast._num = fast._num * np.float32(1.001)  # a feature this module got wrong
    with pytest.raises(FastPathUnavailable, match="differs from RoiModel.predict"):
        fast.verify()


# --------------------------------------------------------------------------- the server


def test_server_fast_path_modes(roi_artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from autoroi.model.fastpath import FastPathUnavailable, FastPredictor
    from serving.roi_server.model import ModelLoadError, RoiModelServer

    server = RoiModelServer(model_dir=roi_artifact)
    server.load()
    assert server.fast is not None
    instances = server.sample_instances()
    fast_answer = server.predict(server.preprocess({"instances": instances}))

    off = RoiModelServer(model_dir=roi_artifact, fast_path="off")
    off.load()
    assert off.fast is None
    ref_answer = off.predict(off.preprocess({"instances": instances}))
    for a, b in zip(fast_answer["predictions"], ref_answer["predictions"], strict=True):
        assert a.keys() == b.keys()
        for k, v in a.items():
            assert v == pytest.approx(b[k], rel=RTOL) if isinstance(v, float) else v == b[k], k

    def broken(*_a: Any, **_k: Any) -> FastPredictor:
        raise FastPathUnavailable("differs from RoiModel.predict: test")

    monkeypatch.setattr(FastPredictor, "build", broken)
    auto = RoiModelServer(model_dir=roi_artifact)
    assert auto.load() and auto.fast is None  # falls back, still serves
    assert auto.predict(auto.preprocess({"instances": instances}))["predictions"]
    with pytest.raises(ModelLoadError, match="no fast path"):
        RoiModelServer(model_dir=roi_artifact, fast_path="on").load()
    from autoroi.errors import ConfigError

    with pytest.raises(ConfigError, match="fast_path"):
        RoiModelServer(model_dir=roi_artifact, fast_path="fast")


def test_request_logging_is_configurable() -> None:
    from serving.roi_server.__main__ import configure_request_logging, parse_args

    args = parse_args(["--model-dir", "m"])
    assert args.access_log is True and args.enable_latency_logging is False and args.fast_path == "auto"
    flags = ["--access-log", "false", "--enable_latency_logging", "true", "--fast-path", "off"]
    args = parse_args(["--model-dir", "m", *flags])
    assert args.access_log is False and args.enable_latency_logging is True and args.fast_path == "off"
    access, trace = logging.getLogger("uvicorn.access"), logging.getLogger("kserve.trace")
    saved = access.level, trace.level
    try:
        configure_request_logging(access_log=False, latency_logging=False)
        assert not access.isEnabledFor(logging.INFO) and not trace.isEnabledFor(logging.INFO)
        configure_request_logging(access_log=True, latency_logging=True)
        assert access.isEnabledFor(logging.INFO) and trace.isEnabledFor(logging.INFO)
    finally:
        access.setLevel(saved[0])
        trace.setLevel(saved[1])
