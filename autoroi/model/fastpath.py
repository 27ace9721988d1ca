"""The model server's prediction path: the numbers of
:meth:`RoiModel.predict <autoroi.model.artifact.RoiModel.predict>` in a
fraction of a millisecond per request.

Why: ``RoiModel.predict`` builds a request's features with pandas (checks, a
merge against the context table, calendar features per week: ~30 ms for one
scenario) and calls the Keras network eagerly (~13 ms). Both are fine for
training, reports and the dashboard's batch calls, and far too slow per
request.

How (:class:`FastPredictor`):

- **at load**, every lookup a request can need is computed once, *through the
  reference path itself* (``RoiModel.features`` then
  ``Preprocessor.transform``), and kept as numpy arrays:

  * per context row (every context cell, every week of its grid ``lo..hi``):
    the normalized numeric inputs, the context's categorical codes
    (``segment``), the MSRP (for the incentive depth), the unit margin and the
    cell level;
  * per servable (region, vehicle model) pair: the context cell it resolves to
    (the coarser cell where k-anonymity merged it) and its own categorical
    codes (region, vehicle model);
  * per week from 1900 to 2199: the normalized calendar inputs;
  * per incentive type: its treatment columns and take rate.

  A request's inputs are then numpy indexing: the context row is the cell's
  offset + ``clip(week, lo, hi) - lo`` (as ``scenario_features`` clips: a later
  week gets the cell's freshest context, an earlier one its first), the
  calendar block is that of the request's own week, and the treatment and
  depth columns come from the type and the amount (``amount / MSRP``, in
  float64, as ``scenario_features`` computes it);
- **the network** runs through one concrete ``tf.function`` (graph mode, batch
  dimension ``None``: no retracing per batch size, no Grappler rewrites: see
  :class:`CompiledNetwork`) on two packed inputs (the int32 categoricals, the
  float32 rest), with the scenarios and their baselines (the same rows without
  incentive) in one call, in the same order as ``RoiModel.predict`` stacks
  them;
- **the ROI** comes from :func:`autoroi.model.roi.member_roi_columns`, the one formula (with
  the interval from the ensemble members' units, which the network returns side by side).

Parity: the network's inputs are the reference's, bit for bit (the same
float64 arithmetic and one cast to float32), and the graph gives the eager
call's numbers for the same batch. ``tests/serving/test_fastpath.py`` compares the two over every
incentive type, every cell level, weeks inside, before and after the data, and
amounts from 0 to the largest accepted, at ``rtol=1e-5``. :meth:`FastPredictor.build`
checks a sample of its own against ``RoiModel.predict`` too and refuses to build
(:class:`FastPathUnavailable`) when they differ, e.g. after a change to the
features that this module does not follow: the server then answers through the
reference path, slower but right.

What the tables do not cover (a pair not precomputed, a week outside the
calendar table, a week that is not written ``YYYY-MM-DD``, an amount or type
the reference refuses) raises :class:`NotCovered` (a ``ScenarioError``):
callers answer those through ``RoiModel.predict``, which scores them or says
what is wrong (:meth:`FastPredictor.predict_frame` does so itself).

Only ``numpy``, ``pandas`` and ``autoroi.model.features`` are imported at
module level; TensorFlow when a predictor is built.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from autoroi.errors import AutoroiError
from autoroi.model import features as F
from autoroi.model.preprocess import DEPTH_INPUT, NUMERIC_INPUT, TREAT_INPUT, input_name
from autoroi.model.roi import INTERVAL_COLUMNS, ROI_COLUMNS, member_roi_columns

if TYPE_CHECKING:
    from autoroi.model.artifact import RoiModel

log = logging.getLogger(__name__)

FIRST_WEEK = date(1900, 1, 1)  # the serving contract's weeks: Mondays from 1900 to 2199
LAST_WEEK = date(2199, 12, 31)
MODEL_VERSION = "model_version"
OUTPUT_COLUMNS: tuple[str, ...] = (
    F.REGION,
    F.VEHICLE_MODEL,
    F.WEEK,
    F.INCENTIVE_TYPE,
    F.INCENTIVE_AMOUNT,
    *ROI_COLUMNS,
    *INTERVAL_COLUMNS,
    F.CELL_LEVEL,
    F.CONTEXT_REGION,
    F.CONTEXT_MODEL,
    MODEL_VERSION,
)
# categoricals the request gives (per pair); every other one comes from the context row
# none: the network sees the answering cell's names (preprocess.ANSWERING), a context row's own
REQUEST_CATEGORICALS: tuple[str, ...] = ()
VERIFY_RTOL = 1e-5
VERIFY_ATOL = 1e-9
EXECUTOR = "SINGLE_THREADED_EXECUTOR"  # TensorFlow's executor for small graphs, run inline
_CACHE_LIMIT = 100_000  # week strings remembered (a batch repeats a few weeks)
_EPOCH = F.EPOCH_MONDAY


class FastPathUnavailable(AutoroiError):
    """The fast path cannot serve this model (or disagrees with the reference)."""


class NotCovered(F.ScenarioError):
    """A scenario outside the precomputed tables: score it with ``RoiModel.predict``."""


def week_index(day: date) -> int:
    """Weeks since ``features.EPOCH_MONDAY`` (the context table's ``_week_index``)."""
    return (day - _EPOCH).days // 7


def _monday_on_or_after(day: date) -> date:
    return day + timedelta((7 - day.weekday()) % 7)


def _monday_on_or_before(day: date) -> date:
    return day - timedelta(day.weekday())


def _week_dates(indices: np.ndarray) -> np.ndarray:
    """Week indices as ``datetime64[ns]`` Mondays."""
    days = np.asarray(indices, dtype=np.int64) * 7
    return (np.datetime64(_EPOCH, "D") + days.astype("timedelta64[D]")).astype("datetime64[ns]")


@dataclass(frozen=True)
class _Slot:
    """Where one network input lies in the packed arrays."""

    name: str
    offset: int
    width: int


class CompiledNetwork:
    """The Keras network as one concrete ``tf.function`` (graph mode) over two
    packed inputs: ``ints`` (the int32 inputs side by side) and ``floats`` (the
    float32 ones); returns the units as float64, one per row.

    The graph runs without Grappler's rewrites (``disable_meta_optimizer``) on
    TensorFlow's single-threaded executor (every kernel inline in the calling
    thread), both set in the options of these calls only, so nothing else in
    the process changes. Grappler's rewrites (fused matmul + bias + activation,
    ...) move the units by up to ~5e-7 relative, which ``incremental_units =
    predicted - baseline`` turns into differences of 1e-5 in the profit and the
    ROI; without them the graph runs the eager call's kernels and gives its
    numbers exactly, and is as fast for a network this small."""

    def __init__(self, network: Any, int_slots: Sequence[_Slot], float_slots: Sequence[_Slot]) -> None:
        import tensorflow as tf
        from tensorflow.python.eager import context as tf_context

        self._tf = tf
        self._context = tf_context.context()
        config = self._context.config  # a copy of the process's
        config.graph_options.rewrite_options.disable_meta_optimizer = True
        # and every kernel inline in the calling thread: no hand-over to the inter-op pool
        self._options = tf_context.FunctionCallOptions(executor_type=EXECUTOR, config_proto=config)
        self._n_int = n_int = sum(s.width for s in int_slots)
        self._n_float = n_float = sum(s.width for s in float_slots)

        def run(ints: Any, floats: Any) -> Any:
            x = {s.name: ints[:, s.offset : s.offset + s.width] for s in int_slots}
            x.update({s.name: floats[:, s.offset : s.offset + s.width] for s in float_slots})
            units = network(x, training=False)  # (rows, members)
            return tf.reshape(units, [tf.shape(ints)[0], -1])

        fn = tf.function(
            run,
            input_signature=[
                tf.TensorSpec((None, n_int), tf.int32, name="ints"),
                tf.TensorSpec((None, n_float), tf.float32, name="floats"),
            ],
            jit_compile=False,
            autograph=False,
        )
        self._concrete = fn.get_concrete_function()
        self._direct = self._direct_call()

    def _direct_call(self) -> Callable[[np.ndarray, np.ndarray], Any] | None:
        """The graph function executed as one op with this object's options,
        on tensors made straight from the arrays: without
        ``ConcreteFunction.__call__``'s argument binding, ``tf.constant``'s
        conversions and the per-call serialization of the options (together
        about half of a small call's time). It uses TensorFlow internals
        (``execute.execute``, ``EagerTensor``, the concrete function's name and
        captures; TensorFlow is pinned in ``uv.lock``), so it is probed against
        the public call here and not used when anything about it differs
        (``None``)."""
        try:
            from tensorflow.python.eager import execute
            from tensorflow.python.framework.ops import EagerTensor

            atomic = self._concrete._inference_function
            name = atomic.name.decode() if isinstance(atomic.name, bytes) else str(atomic.name)
            n_out = len(atomic.function_type.flat_outputs)
            captures = list(self._concrete.captured_inputs)
            attrs = tuple(itertools.chain.from_iterable(self._options.as_attrs().items()))
            context = self._context
            device = context.device_name

            def direct(ints: np.ndarray, floats: np.ndarray) -> Any:
                inputs = [EagerTensor(ints, device, None), EagerTensor(floats, device, None), *captures]
                return execute.execute(name, num_outputs=n_out, inputs=inputs, attrs=attrs, ctx=context)[0]

            rng = np.random.default_rng(0)
            probe_ints = np.ones((3, self._n_int), dtype=np.int32)
            probe_floats = rng.normal(size=(3, self._n_float)).astype(np.float32)
            want = self._public(probe_ints, probe_floats).numpy()
            if np.array_equal(direct(probe_ints, probe_floats).numpy(), want):
                return direct
            log.warning("the direct graph call differs from the public one; using the public one")
        except Exception as e:  # noqa: BLE001 - internals of another TensorFlow: use the public call
            log.warning("no direct graph call (%s: %s); using the public one", type(e).__name__, e)
        return None

    def _public(self, ints: np.ndarray, floats: np.ndarray) -> Any:
        tf, ctx = self._tf, self._context
        saved = ctx.function_call_options
        ctx.function_call_options = self._options
        try:
            return self._concrete(tf.constant(ints), tf.constant(floats))
        finally:
            ctx.function_call_options = saved

    def __call__(self, ints: np.ndarray, floats: np.ndarray) -> np.ndarray:
        """Units per row and ensemble member, ``(rows, members)``."""
        call = self._direct or self._public
        return call(ints, floats).numpy().astype(np.float64)


class FastPredictor:
    """``RoiModel.predict`` from precomputed lookups and a compiled network
    (module docstring). Build it with :meth:`build`; score with :meth:`predict`
    (columns) or :meth:`predict_frame` (``RoiModel.predict``'s frame)."""

    network: CompiledNetwork

    def __init__(self, model: RoiModel) -> None:  # use build()
        self.model = model
        self.version = model.version
        self.build_s = 0.0
        self.pairs: dict[tuple[str, str], int] = {}
        self._weeks: dict[Any, int] = {}
        self._week_text: dict[int, str] = {}

    # ------------------------------------------------------------------ building
    @classmethod
    def build(
        cls,
        model: RoiModel,
        *,
        pairs: Iterable[tuple[str, str]] | None = None,
        first_week: date = FIRST_WEEK,
        last_week: date = LAST_WEEK,
        verify: bool = True,
    ) -> FastPredictor:
        """Precompute the lookups of ``model`` for ``pairs`` (default: each
        context cell itself; the server passes every pair its vocabulary
        accepts) and weeks ``first_week..last_week``, compile the network, and
        (``verify``) check a sample against ``RoiModel.predict``. Raises
        :class:`FastPathUnavailable` when the model's features are not what
        this module knows how to precompute, or the check fails."""
        started = time.perf_counter()
        self = cls(model)
        try:
            self._build_context()
            self._build_pairs(pairs)
            self._build_calendar(_monday_on_or_after(first_week), _monday_on_or_before(last_week))
            self._build_inputs()
            self._build_types()
        except F.ScenarioError as e:
            raise FastPathUnavailable(f"the reference path refuses a precomputed scenario: {e}") from e
        except (KeyError, ValueError) as e:
            raise FastPathUnavailable(f"cannot precompute the features: {type(e).__name__}: {e}") from e
        self.network = CompiledNetwork(model.network, self._int_slots, self._float_slots)
        if verify:
            self.verify()
        self.build_s = time.perf_counter() - started
        log.info(
            "fast path for model %s: %d context rows, %d pairs, %d weeks, built in %.2f s",
            model.version,
            len(self._num),
            len(self.pairs),
            len(self._cal),
            self.build_s,
        )
        return self

    def _features(self, regions: Any, models: Any, week_indices: np.ndarray) -> pd.DataFrame:
        """The reference features of "no incentive" scenarios."""
        scenarios = pd.DataFrame(
            {
                F.REGION: regions,
                F.VEHICLE_MODEL: models,
                F.WEEK: _week_dates(week_indices),
                F.INCENTIVE_TYPE: F.NO_INCENTIVE,
                F.INCENTIVE_AMOUNT: 0.0,
            }
        )
        return self.model.features(scenarios)

    def _build_context(self) -> None:
        ctx = self.model.context
        bounds = ctx.groupby([F.REGION, F.VEHICLE_MODEL], sort=True)[F.WEEK_INDEX].agg(["min", "max"])
        cells = [(str(r), str(m)) for r, m in bounds.index]
        lo = bounds["min"].to_numpy(np.int64)
        hi = bounds["max"].to_numpy(np.int64)
        lengths = hi - lo + 1
        self._cells = {c: i for i, c in enumerate(cells)}
        self._lo, self._hi = lo, hi
        self._off = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        cell_of_row = np.repeat(np.arange(len(cells)), lengths)
        weeks = lo[cell_of_row] + (np.arange(int(lengths.sum())) - self._off[cell_of_row])
        feats = self._features([cells[c][0] for c in cell_of_row], [cells[c][1] for c in cell_of_row], weeks)
        got = list(zip(feats[F.CONTEXT_REGION], feats[F.CONTEXT_MODEL], strict=True))
        want = [cells[c] for c in cell_of_row]
        if F.ANSWER_REGION in ctx.columns:  # a merged week is answered by its coarser row (scaled)
            answer = ctx.set_index([F.REGION, F.VEHICLE_MODEL, F.WEEK_INDEX])[
                [F.ANSWER_REGION, F.ANSWER_MODEL]
            ]
            keys = pd.MultiIndex.from_arrays([[w[0] for w in want], [w[1] for w in want], weeks])
            a = answer.reindex(keys)
            moved = a[F.ANSWER_REGION].fillna("").to_numpy() != ""
            want = [
                (str(r), str(m)) if mv else w
                for w, mv, r, m in zip(want, moved, a[F.ANSWER_REGION], a[F.ANSWER_MODEL], strict=True)
            ]
        if got != want:
            raise ValueError("a context cell does not resolve to itself")
        self._ctx_feats = feats
        self._ctx_inputs = self.model.preprocessor.transform(feats)
        msrp = feats[F.MSRP].to_numpy(np.float64)
        self._msrp = np.where(msrp > 0, msrp, np.nan)  # scenario_features: amount / MSRP where MSRP > 0
        self._margin = feats[F.UNIT_MARGIN].to_numpy(np.float64)
        self._level = feats[F.CELL_LEVEL].to_numpy(dtype=object)
        self._ctx_region, self._ctx_model = F.reported_context(feats)
        # the factor on the answering cell's units: for the cell itself (its share of the coarser
        # row a merged week went to, else 1), and for a pair never published on its own
        self._scale_own = feats[F.CELL_SCALE].to_numpy(np.float64)
        unknown = feats[F.UNKNOWN_SHARE] if F.UNKNOWN_SHARE in feats.columns else pd.Series(1.0, feats.index)
        self._scale_other = unknown.to_numpy(np.float64)
        # a "none" scenario's treatments are the programs that ran (its background)
        spec = self.model.spec
        self._bg_treat = np.nan_to_num(feats[list(spec.treat_columns)].to_numpy(np.float64), nan=0.0)
        self._bg_depth = np.nan_to_num(feats[list(spec.depth_columns)].to_numpy(np.float64), nan=0.0)
        ran = [F.RAN[t] for t in spec.treatments]  # what ran per type, for crowding by its own type
        self._ran_depth = (
            np.nan_to_num(feats[ran].to_numpy(np.float64), nan=0.0)
            if all(c in feats.columns for c in ran)
            else np.zeros_like(self._bg_depth)
        )

    def _build_pairs(self, pairs: Iterable[tuple[str, str]] | None) -> None:
        wanted = sorted({(str(r), str(m)) for r, m in pairs} if pairs is not None else self._cells)
        if not wanted:
            raise ValueError("no (region, vehicle model) pair to precompute")
        any_week = np.full(len(wanted), int(self._lo.min()), dtype=np.int64)
        feats = self._features([p[0] for p in wanted], [p[1] for p in wanted], any_week)
        cell_of = [
            self._cells[(str(r), str(m))]
            for r, m in zip(feats["context_region"], feats["context_vehicle_model"], strict=True)
        ]
        self.pairs = {p: i for i, p in enumerate(wanted)}
        self._pair_cell = np.asarray(cell_of, dtype=np.int64)
        cell_names = list(self._cells)
        self._pair_own = np.asarray([cell_names[c] == p for c, p in zip(cell_of, wanted, strict=True)])
        self._pair_inputs = self.model.preprocessor.transform(feats)

    def _build_calendar(self, first: date, last: date) -> None:
        spec = self.model.spec
        self._cal_cols = np.asarray([list(spec.numeric).index(c) for c in spec.calendar], dtype=np.int64)
        self._cal_first, self._cal_last = week_index(first), week_index(last)
        weeks = np.arange(self._cal_first, self._cal_last + 1, dtype=np.int64)
        r, m = next(iter(self._cells))
        feats = self._features(r, m, weeks)
        self._cal = np.ascontiguousarray(
            self.model.preprocessor.transform(feats)[NUMERIC_INPUT][:, self._cal_cols]
        )

    def _build_inputs(self) -> None:
        """The packed layout of the network's inputs and the per-row /
        per-pair parts of the categoricals."""
        ctx_in, pair_in = self._ctx_inputs, self._pair_inputs
        spec = self.model.spec
        int_slots: list[_Slot] = []
        float_slots: list[_Slot] = []
        row_ints, pair_ints = [], []
        n_rows = len(ctx_in[NUMERIC_INPUT])
        for c in spec.categorical:
            name = input_name(c)
            int_slots.append(_Slot(name, len(int_slots), 1))
            if c in REQUEST_CATEGORICALS:
                pair_ints.append(pair_in[name][:, 0])
                row_ints.append(np.zeros(n_rows, dtype=np.int32))
            else:
                if c not in self._ctx_feats.columns or c in (F.INCENTIVE_TYPE, F.INCENTIVE_AMOUNT):
                    raise ValueError(f"categorical {c!r} is neither the request's nor the context's")
                pair_ints.append(np.zeros(len(self.pairs), dtype=np.int32))
                row_ints.append(ctx_in[name][:, 0])
        offset = 0
        for name in (NUMERIC_INPUT, TREAT_INPUT, DEPTH_INPUT):
            width = ctx_in[name].shape[1]
            float_slots.append(_Slot(name, offset, width))
            offset += width
        known = {s.name for s in (*int_slots, *float_slots)}
        if set(ctx_in) != known:
            raise ValueError(f"network inputs {sorted(set(ctx_in) - known)} are not precomputed here")
        self._int_slots, self._float_slots = int_slots, float_slots
        self._n_float = offset
        self._row_ints = np.stack(row_ints, axis=1).astype(np.int32)
        self._pair_ints = np.stack(pair_ints, axis=1).astype(np.int32)
        self._num = np.ascontiguousarray(ctx_in[NUMERIC_INPUT], dtype=np.float32)
        slot = {s.name: s for s in float_slots}
        self._num_slice = slice(slot[NUMERIC_INPUT].offset, slot[NUMERIC_INPUT].offset + self._num.shape[1])
        t, d = slot[TREAT_INPUT], slot[DEPTH_INPUT]
        self._treat_slice = slice(t.offset, t.offset + t.width)
        self._depth_slice = slice(d.offset, d.offset + d.width)
        del self._ctx_inputs, self._pair_inputs, self._ctx_feats  # only the arrays are kept

    def _build_types(self) -> None:
        spec = self.model.spec
        seen = self.model.metadata.get("incentive_types_seen")
        allowed = [t for t in F.SCENARIO_TYPES if t == F.NO_INCENTIVE or seen is None or t in set(seen)]
        self._kinds = {t: i for i, t in enumerate(allowed)}
        self._kind_names = np.asarray(allowed, dtype=object)
        self._none = self._kinds[F.NO_INCENTIVE]
        self._treat = np.asarray(
            [[1.0 if t == k else 0.0 for t in spec.treatments] for k in allowed], dtype=np.float64
        )
        self._rate = F.take_rate_of(np.asarray(allowed, dtype=object), self.model.take_rates)
        self._uptake = self.model.uptake_of(np.asarray(allowed, dtype=object))
        pf = self.model.pull_forward
        self._pull_forward = F.pull_forward_of(np.asarray(allowed, dtype=object), pf) if pf else None
        # the column of each kind's own treatment (-1: "none")
        cols = list(spec.treatments)
        self._kind_col = np.asarray([cols.index(k) if k in cols else -1 for k in allowed], dtype=np.int64)
        # uptake per treatment column, for the crowding of richer programs beside (features.crowding)
        self._col_uptake = np.asarray([self.model.uptake.get(t, 0.0) for t in cols], dtype=np.float64)

    # ------------------------------------------------------------------ lookups
    def _pair_ids(self, regions: Sequence[str], models: Sequence[str]) -> np.ndarray:
        pairs = self.pairs
        try:
            return np.fromiter(
                (pairs[p] for p in zip(regions, models, strict=True)), dtype=np.int64, count=len(regions)
            )
        except KeyError as e:
            raise NotCovered(F.VEHICLE_MODEL, f"pair {e.args[0]!r} is not precomputed") from None

    def _week_id(self, value: Any) -> int:
        if isinstance(value, str):
            try:
                day = date.fromisoformat(value)
            except ValueError:
                raise NotCovered(F.WEEK, f"{value!r} is not written YYYY-MM-DD") from None
        elif isinstance(value, datetime):  # pandas Timestamps too: the date of its wall time
            day = value.date()
        elif isinstance(value, date):
            day = value
        else:
            raise NotCovered(F.WEEK, f"{type(value).__name__} is not a date")
        if day.weekday() != 0:
            raise NotCovered(F.WEEK, f"{day} is not a Monday")
        idx = week_index(day)
        if len(self._weeks) < _CACHE_LIMIT:
            self._weeks[value] = idx
        return idx

    def _week_ids(self, weeks: Sequence[Any] | np.ndarray) -> np.ndarray:
        if isinstance(weeks, np.ndarray) and np.issubdtype(weeks.dtype, np.datetime64):
            days = weeks.astype("datetime64[D]")
            if (days != weeks).any():
                raise NotCovered(F.WEEK, "a week is not a midnight")
            out = (days - np.datetime64(_EPOCH, "D")).astype(np.int64)
            if (out % 7).any():
                raise NotCovered(F.WEEK, "a week is not a Monday")
            out //= 7
        else:
            cache, look_up = self._weeks, self._week_id
            out = np.fromiter(
                (cache[w] if w in cache else look_up(w) for w in weeks), dtype=np.int64, count=len(weeks)
            )
        if len(out) and (out.min() < self._cal_first or out.max() > self._cal_last):
            raise NotCovered(F.WEEK, "a week outside the precomputed calendar")
        return out

    def _kind_ids(self, kinds: Sequence[str]) -> np.ndarray:
        try:
            return np.fromiter((self._kinds[k] for k in kinds), dtype=np.int64, count=len(kinds))
        except KeyError as e:
            raise NotCovered(F.INCENTIVE_TYPE, f"{e.args[0]!r} is not a type this model scores") from None

    def _week_texts(self, ids: np.ndarray) -> list[str]:
        texts = self._week_text
        out = []
        for i in ids.tolist():
            text = texts.get(i)
            if text is None:
                text = (_EPOCH + timedelta(weeks=i)).isoformat()
                if len(texts) < _CACHE_LIMIT:
                    texts[i] = text
            out.append(text)
        return out

    # ------------------------------------------------------------------ scoring
    def inputs(
        self, pair_ids: np.ndarray, week_ids: np.ndarray, kind_ids: np.ndarray, amounts: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The packed network inputs of the scenarios and, below them, their
        baselines (the programs that ran beside still on) and, for a model
        with uptakes, the same rows without any incentive; each scenario's
        context row, and the share of its regular buyers that no richer
        program beside took first (``features.crowding``)."""
        n = len(pair_ids)
        cell = self._pair_cell[pair_ids]
        lo = self._lo[cell]
        row = self._off[cell] + np.minimum(np.maximum(week_ids, lo), self._hi[cell]) - lo
        ints = self._row_ints[row]
        ints += self._pair_ints[pair_ids]
        blocks = 3 if self._uptake is not None else 2  # + no incentive at all (the regular buyers)
        floats = np.zeros((blocks * n, self._n_float), dtype=np.float32)
        num = self._num[row]
        num[:, self._cal_cols] = self._cal[week_ids - self._cal_first]
        for b in range(blocks):
            floats[b * n : (b + 1) * n, self._num_slice] = num
        # scenario_features: nan_to_num(amount / MSRP, nan=0) where the type is on, else 0 (an
        # infinite depth, which nan_to_num makes the largest float64, is inf in float32 either way)
        depth = amounts / self._msrp[row]
        depth[np.isnan(depth)] = 0.0
        col = self._kind_col[kind_ids]
        own = np.flatnonzero(col >= 0)
        treat = self._bg_treat[row]  # the programs that ran beside (zeros without a background)
        depths = self._bg_depth[row]
        floats[n : 2 * n, self._treat_slice] = treat  # without the scenario: the background only
        floats[n : 2 * n, self._depth_slice] = depths
        floats[n + own, self._treat_slice.start + col[own]] = 0.0
        floats[n + own, self._depth_slice.start + col[own]] = 0.0
        crowding = np.ones(n)
        if blocks == 3:
            beside = treat > 0
            beside[own, col[own]] = False
            richer = beside & (depths > depth[:, None])
            tied = beside & (depths == depth[:, None])
            u = self._col_uptake[None, :]
            crowding = np.prod(np.where(richer, 1.0 - u, np.where(tied, 1.0 - u / 2, 1.0)), axis=1)
            # a richer program of the scenario's own type that ran there (features.crowding)
            same = self._ran_depth[row[own], col[own]] > depth[own]
            crowding[own] *= np.where(same, 1.0 - self._col_uptake[col[own]], 1.0)
        treat[own, col[own]] = 1.0
        depths[own, col[own]] = depth[own]
        floats[:n, self._treat_slice] = treat
        floats[:n, self._depth_slice] = depths
        return np.concatenate((ints,) * blocks), floats, row, crowding

    def predict(
        self,
        regions: Sequence[str],
        vehicle_models: Sequence[str],
        weeks: Sequence[Any] | np.ndarray,
        incentive_types: Sequence[str],
        amounts: Sequence[float] | np.ndarray,
    ) -> dict[str, Any]:
        """``RoiModel.predict``'s columns (:data:`OUTPUT_COLUMNS`) as arrays,
        for checked scenarios given column by column (weeks as ``YYYY-MM-DD``
        strings, dates or ``datetime64``). Raises :class:`NotCovered` for
        anything the tables do not hold."""
        n = len(regions)
        if n == 0:
            raise NotCovered(F.REGION, "no scenario")
        pair_ids = self._pair_ids(regions, vehicle_models)
        week_ids = self._week_ids(weeks)
        kind_ids = self._kind_ids(incentive_types)
        amt = np.asarray(amounts, dtype=np.float64).reshape(-1)
        if len(amt) != n or len(week_ids) != n:
            raise ValueError("predict: the columns must have the same length")
        # NaN fails >= 0; inf fails < inf; type "none" needs amount 0
        if not (amt.min() >= 0 and amt.max() < np.inf) or amt[kind_ids == self._none].any():
            raise NotCovered(F.INCENTIVE_AMOUNT, "an amount the reference refuses")
        ints, floats, row, crowding = self.inputs(pair_ids, week_ids, kind_ids, amt)
        units = self.network(ints, floats)
        scale = np.where(self._pair_own[pair_ids], self._scale_own[row], self._scale_other[row])
        units *= np.tile(scale, len(units) // n)[:, None]
        out: dict[str, Any] = {
            F.REGION: np.asarray(regions, dtype=object),
            F.VEHICLE_MODEL: np.asarray(vehicle_models, dtype=object),
            F.WEEK: np.asarray(self._week_texts(week_ids), dtype=object),
            F.INCENTIVE_TYPE: self._kind_names[kind_ids],
            F.INCENTIVE_AMOUNT: amt,
        }
        uptake = self._uptake  # with uptakes, a third block: the regular buyers
        out.update(
            member_roi_columns(
                units[:n],
                units[n : 2 * n],
                amt,
                self._margin[row],
                self._rate[kind_ids],
                None if uptake is None else uptake[kind_ids],
                None if uptake is None else units[2 * n :] * crowding[:, None],
                None if self._pull_forward is None else self._pull_forward[kind_ids],
            )
        )
        out[F.CELL_LEVEL] = self._level[row]
        out[F.CONTEXT_REGION] = self._ctx_region[row]
        out[F.CONTEXT_MODEL] = self._ctx_model[row]
        out[MODEL_VERSION] = np.full(n, self.version, dtype=object)
        return out

    def predict_frame(self, scenarios: pd.DataFrame | Iterable[Any]) -> pd.DataFrame:
        """``RoiModel.predict(scenarios)``, the same frame, through the fast
        path (the reference's own checks first; what the tables do not cover
        goes to the reference)."""
        checked = self.model.check(scenarios)
        try:
            cols = self.predict(
                checked[F.REGION].tolist(),
                checked[F.VEHICLE_MODEL].tolist(),
                checked[F.WEEK].to_numpy(dtype="datetime64[ns]"),
                checked[F.INCENTIVE_TYPE].tolist(),
                checked[F.INCENTIVE_AMOUNT].to_numpy(np.float64),
            )
        except NotCovered:
            return self.model.predict(checked)
        return pd.DataFrame({c: cols[c] for c in OUTPUT_COLUMNS})

    # ------------------------------------------------------------------ checking
    def sample(self, max_pairs: int = 24, seed: int = 0) -> pd.DataFrame:
        """Scenarios that exercise the tables: pairs (spread over the cell
        levels), weeks before, inside, at the end of and after each cell's
        data, every type this model scores, amounts from 0 up."""
        rng = np.random.default_rng(seed)
        pairs = sorted(self.pairs)
        levels: dict[str, list[tuple[str, str]]] = {}
        for p in pairs:
            c = self._pair_cell[self.pairs[p]]
            levels.setdefault(str(self._level[self._off[c]]), []).append(p)
        chosen = {ps[0] for ps in levels.values()}  # one pair of every cell level first
        rest = [p for p in pairs if p not in chosen]
        extra = max(0, max_pairs - len(chosen))
        if rest and extra:
            chosen |= {rest[i] for i in rng.choice(len(rest), size=min(extra, len(rest)), replace=False)}
        kinds = list(self._kinds)
        amounts = (0.0, 250.0, 1500.0, 4000.0, 25_000.0)
        rows = []
        for j, (r, m) in enumerate(sorted(chosen)):
            c = self._pair_cell[self.pairs[(r, m)]]
            lo, hi = int(self._lo[c]), int(self._hi[c])
            weeks = {lo - 60, lo, (lo + hi) // 2, hi - 1, hi, hi + 1, hi + 200}
            weeks = {w for w in weeks if self._cal_first <= w <= self._cal_last}
            for k, w in enumerate(sorted(weeks)):
                kind = kinds[(j + k) % len(kinds)]
                amount = 0.0 if kind == F.NO_INCENTIVE else amounts[(j * 3 + k) % len(amounts)]
                day = (_EPOCH + timedelta(weeks=w)).isoformat()
                rows.append((r, m, day, kind, amount))
                if kind != F.NO_INCENTIVE:  # and the same week without
                    rows.append((r, m, day, F.NO_INCENTIVE, 0.0))
        return pd.DataFrame.from_records(rows, columns=list(F.SCENARIO_FIELDS))

    def verify(self, scenarios: pd.DataFrame | None = None) -> None:
        """Check the fast path against ``RoiModel.predict`` (``rtol=1e-5``);
        :class:`FastPathUnavailable` when they differ."""
        s = self.sample() if scenarios is None else scenarios
        want = self.model.predict(s)
        checked = self.model.check(s)
        try:
            got = pd.DataFrame(
                self.predict(
                    checked[F.REGION].tolist(),
                    checked[F.VEHICLE_MODEL].tolist(),
                    checked[F.WEEK].to_numpy(dtype="datetime64[ns]"),
                    checked[F.INCENTIVE_TYPE].tolist(),
                    checked[F.INCENTIVE_AMOUNT].to_numpy(np.float64),
                )
            )
        except NotCovered as e:
            raise FastPathUnavailable(f"the check sample is not covered: {e}") from e
        problems = compare(got, want)
        if problems:
            raise FastPathUnavailable("differs from RoiModel.predict: " + "; ".join(problems[:5]))


def compare(
    got: pd.DataFrame | dict[str, Any],
    want: pd.DataFrame,
    rtol: float = VERIFY_RTOL,
    atol: float = VERIFY_ATOL,
    columns: Collection[str] = OUTPUT_COLUMNS,
) -> list[str]:
    """Where two prediction frames differ (numbers at ``rtol``/``atol``, NaN
    where NaN; the rest exactly): one line per column, empty when they agree."""
    problems = []
    for c in columns:
        a, b = np.asarray(got[c]), want[c].to_numpy()
        if len(a) != len(b):
            problems.append(f"{c}: {len(a)} rows, expected {len(b)}")
        elif c in ROI_COLUMNS or c in INTERVAL_COLUMNS or c == F.INCENTIVE_AMOUNT:
            x, y = a.astype(np.float64), b.astype(np.float64)
            bad = ~np.isclose(x, y, rtol=rtol, atol=atol, equal_nan=True)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                problems.append(f"{c}: {int(bad.sum())} rows differ, e.g. row {i}: {x[i]!r} vs {y[i]!r}")
        else:
            bad = np.asarray([str(p) != str(q) for p, q in zip(a, b, strict=True)])
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                problems.append(f"{c}: {int(bad.sum())} rows differ, e.g. row {i}: {a[i]!r} vs {b[i]!r}")
    return problems
