"""The units model: a Keras 3 network for tabular data with an explicit
multiplicative incentive head.

::

    units  = exp(base(cell, context, calendar) - dip(ended programs)) x prod_t (1 + lift_t)^treat_t
    lift_t = max_lift_t(cell) x (1 - exp(-k_t x depth_t))

- ``base`` is wide and deep: a linear term (a Poisson GLM in the embeddings
  of region, vehicle model and segment and the normalized numeric features:
  cell context, calendar, history) plus an MLP over the same inputs for the
  interactions. The linear term carries what is log-linear (a cell's level
  from its lags, the season from last year's weeks) and extrapolates to later
  weeks as a GLM does; without it the MLP overfitted the ~10k training rows
  within 20 epochs (bench/RESULTS.md, "Model quality").
- ``lift_t`` is the lift of incentive type ``t`` at depth ``amount / MSRP``:
  the exponential saturation curve of marketing-mix models (zero at depth 0,
  rising with diminishing returns). Its height ``max_lift_t(cell)`` is a
  bilinear interaction of the cell (an MLP over the same cell embeddings) with
  the embedding of the incentive type, so every type reacts to every cell
  attribute; its rate ``k_t`` belongs to the type (see ``IncentiveLift``).
- ``dip`` is the pull-forward of programs that ended in the weeks before
  (``PullForwardDip``, with ``FeatureSpec.ended``): non-negative weights on
  their summed depth, outside the base MLP.
- ``treat_t`` / ``depth_t`` come per type: a master row may have several
  programs running (their effects multiply, and each type's lift is learned
  from every week it ran, not only where it happened to dominate); a served
  scenario has one.

The counterfactual is exact by construction: without an incentive (every
``treat_t = 0``) the prediction is ``exp(base)``, so ``predicted / baseline =
1 + lift`` and the lift is never negative.

Training: Adam, its learning rate decaying to 0 along a cosine over the
epochs (:func:`make_optimizer`).

Loss: Poisson deviance. Weekly units are counts (integers, many small, some 0),
and the Poisson log-likelihood with a log link fits the *mean* consistently even
when counts are overdispersed (the source's are gamma-Poisson), which is all the
ROI needs. Tweedie (1 < p < 2) is for continuous amounts with exact zeros, such
as revenue; it would add a power parameter to tune and gain nothing for counts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import keras
from keras import layers, ops

from autoroi.model.preprocess import DEPTH_INPUT, NUMERIC_INPUT, TREAT_INPUT, input_name

LOSS = "poisson"
K_SCALE = 10.0  # k = softplus(.) x K_SCALE: depths are a few percent, useful k are 5-40
LIFT_LEVEL_BIAS = -1.5  # initial max lift about softplus(-1.5) = 0.2
LIFT_RATE_BIAS = 1.0  # initial k = softplus(1) x 10 = 13
MAX_LOG_RATE = 20.0
# initial dip weight: softplus(-6) = 0.0025 per standard deviation, no dip until learned (at
# softplus(-3) = 0.05 the untrained dip already outweighed a small world's lift)
DIP_BIAS = -6.0

DEFAULT_HYPERPARAMETERS: dict[str, Any] = {
    "layers": 2,
    "units": 64,
    "embedding_dim": 8,
    "lift_units": 16,
    "learning_rate": 3e-3,
    "dropout": 0.1,
    "batch_size": 128,
}


def hyperparameters(hp: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``hp`` completed with the defaults; unknown names are an error."""
    out = dict(DEFAULT_HYPERPARAMETERS)
    unknown = set(hp or {}) - set(out)
    if unknown:
        raise ValueError(f"unknown hyperparameters {sorted(unknown)}; known: {sorted(out)}")
    out.update(hp or {})
    for k in ("layers", "units", "embedding_dim", "lift_units", "batch_size"):
        out[k] = int(out[k])
    out["learning_rate"] = float(out["learning_rate"])
    out["dropout"] = float(out["dropout"])
    return out


def make_loss() -> keras.losses.Loss:
    """Poisson deviance on the predicted rate (see the module docstring)."""
    return keras.losses.Poisson(name=LOSS)


@keras.saving.register_keras_serializable(package="autoroi")
class IncentiveLift(layers.Layer):
    """Log of the incentive factor, ``sum_t treat_t x log(1 + lift_t)``, with
    ``lift_t = max_lift_t(cell) x (1 - exp(-k_t x depth_t))``.

    ``max_lift_t(cell) = softplus(<h(cell), e_t> + b_t)``: a bilinear interaction
    of the cell (an MLP ``h`` over the cell embedding) with the embedding ``e_t``
    of incentive type ``t`` (factorization-machine style: every type reacts to
    every cell attribute, with few parameters per type). The saturation rate
    ``k_t`` is one parameter per type, as in marketing-mix models (the curve's
    shape belongs to the channel, its height to the market)."""

    def __init__(self, n_types: int, hidden_units: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.n_types = int(n_types)
        self.hidden_units = int(hidden_units)
        self.hidden = layers.Dense(self.hidden_units, activation="relu", name="hidden")

    def build(self, input_shape: Any) -> None:
        self.hidden.build(input_shape[0])
        self.type_embedding = self.add_weight(
            shape=(self.hidden_units, self.n_types), initializer="glorot_uniform", name="type_embedding"
        )
        self.level_bias = self.add_weight(
            shape=(self.n_types,), initializer=keras.initializers.Constant(LIFT_LEVEL_BIAS), name="level_bias"
        )
        self.rate = self.add_weight(
            shape=(self.n_types,), initializer=keras.initializers.Constant(LIFT_RATE_BIAS), name="rate"
        )

    def call(self, inputs: list[Any]) -> Any:
        cell, treat, depth = inputs
        level = ops.matmul(self.hidden(cell), self.type_embedding) + self.level_bias
        k = ops.softplus(self.rate) * K_SCALE
        lift = ops.softplus(level) * (1.0 - ops.exp(-k * ops.maximum(depth, 0.0)))
        return ops.sum(treat * ops.log1p(lift), axis=1, keepdims=True)

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, int]:
        return (input_shape[0][0], 1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n_types": self.n_types, "hidden_units": self.hidden_units}


@keras.saving.register_keras_serializable(package="autoroi")
class LeadingColumns(layers.Layer):
    """The first ``n`` columns of a matrix (the numeric features the base reads)."""

    def __init__(self, n: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.n = int(n)

    def call(self, inputs: Any) -> Any:
        return inputs[:, : self.n]

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, int]:
        return (input_shape[0], self.n)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n": self.n}


@keras.saving.register_keras_serializable(package="autoroi")
class PullForwardDip(layers.Layer):
    """Log of the dip that ended programs leave, ``-sum_j softplus(w_j) x x_j``
    over the last ``n`` numeric columns (``features.ENDED``, normalized).

    Why a layer of its own, outside the base: with the ended-program columns
    among the base's inputs, its MLP could use them for anything, and on a
    small world (8 cells) it did: the lift halved and the pull-forward read
    0.75 where the truth has 0.20-0.25. Here more ended-program depth can only
    lower the units, by one non-negative weight per column."""

    def __init__(self, n: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.n = int(n)

    def build(self, input_shape: Any) -> None:
        self.w = self.add_weight(
            shape=(self.n,), initializer=keras.initializers.Constant(DIP_BIAS), name="dip_weight"
        )

    def call(self, inputs: Any) -> Any:
        ended = inputs[:, -self.n :]
        return -ops.sum(ended * ops.softplus(self.w), axis=1, keepdims=True)

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, int]:
        return (input_shape[0], 1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n": self.n}


@keras.saving.register_keras_serializable(package="autoroi")
class ExpRate(layers.Layer):
    """``exp(base_log + lift_log)``, clipped in log space."""

    def call(self, inputs: list[Any]) -> Any:
        base_log, lift_log = inputs
        return ops.exp(ops.clip(base_log + lift_log, -MAX_LOG_RATE, MAX_LOG_RATE))

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape[0]


CUSTOM_OBJECTS = {
    "IncentiveLift": IncentiveLift,
    "ExpRate": ExpRate,
    "LeadingColumns": LeadingColumns,
    "PullForwardDip": PullForwardDip,
}


def build_network(
    vocab_sizes: Mapping[str, int],
    n_numeric: int,
    n_treatments: int,
    hp: Mapping[str, Any] | None = None,
    *,
    init_log_rate: float = 0.0,
    decay_steps: int | None = None,
    compile: bool = True,
    n_dip: int = 0,
) -> keras.Model:
    """The functional model; inputs are named as ``Preprocessor.transform`` names them.
    With ``decay_steps`` (the training's batches in all), the learning rate
    follows a cosine decay from ``learning_rate`` to 0 over them (see
    :func:`make_optimizer`)."""
    p = hyperparameters(hp)
    cat_inputs = {c: keras.Input(shape=(1,), dtype="int32", name=input_name(c)) for c in vocab_sizes}
    emb = [
        layers.Flatten(name=f"flat_{c}")(
            layers.Embedding(n, p["embedding_dim"], name=f"emb_{c}")(cat_inputs[c])
        )
        for c, n in vocab_sizes.items()
    ]
    numeric = keras.Input(shape=(n_numeric,), name=NUMERIC_INPUT)
    treat = keras.Input(shape=(n_treatments,), name=TREAT_INPUT)
    depth = keras.Input(shape=(n_treatments,), name=DEPTH_INPUT)

    cell = layers.Concatenate(name="cell")(emb) if len(emb) > 1 else emb[0]
    # the last n_dip numeric columns are the ended programs' (PullForwardDip), not the base's
    base_numeric = LeadingColumns(n_numeric - n_dip, name="base_numeric")(numeric) if n_dip else numeric
    base_in = layers.Concatenate(name="base_in")([cell, base_numeric])
    h = base_in
    for i in range(p["layers"]):
        h = layers.Dense(p["units"], activation="relu", name=f"base_{i}")(h)
        if p["dropout"] > 0:
            h = layers.Dropout(p["dropout"], name=f"base_drop_{i}")(h)
    deep = layers.Dense(1, name="base_deep", bias_initializer=keras.initializers.Constant(init_log_rate))(h)
    # the wide (linear) part: log-linear in the cell embeddings and the numeric
    # features, as a Poisson GLM; the deep part adds the interactions
    wide = layers.Dense(1, use_bias=False, kernel_initializer="zeros", name="base_wide")(base_in)
    base_log = layers.Add(name="base_log")([deep, wide])
    if n_dip:
        base_log = layers.Add(name="base_after_dip")([base_log, PullForwardDip(n_dip, name="dip")(numeric)])
    lift_log = IncentiveLift(n_treatments, p["lift_units"], name="lift")([cell, treat, depth])
    rate = ExpRate(name="units")([base_log, lift_log])

    model = keras.Model(inputs=[*cat_inputs.values(), numeric, treat, depth], outputs=rate, name="roi_units")
    if compile:
        model.compile(
            optimizer=make_optimizer(p["learning_rate"], decay_steps), loss=make_loss(), jit_compile=False
        )
    return model


def make_optimizer(learning_rate: float, decay_steps: int | None = None) -> keras.optimizers.Optimizer:
    """Adam; with ``decay_steps``, its learning rate decays from ``learning_rate``
    to 0 along a cosine over that many batches.

    Why decay: the backtest and the final fit train for a fixed number of
    epochs (the tuned ones) with no validation set to pick the best epoch, so
    the weights they keep are those of the last batches. At a constant rate
    those wander with the minibatch noise, and the backtest's units WAPE moved
    by up to 0.006 (3 % of it) between seeds; annealing to 0 ends on a settled
    point (measured in bench/RESULTS.md, "Model quality")."""
    if decay_steps is None or decay_steps < 1:
        return keras.optimizers.Adam(learning_rate)
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, int(decay_steps))
    return keras.optimizers.Adam(schedule)


def decay_steps_for(rows: int, batch_size: int, epochs: int) -> int:
    """Batches in ``epochs`` epochs over ``rows`` rows."""
    return max(1, int(epochs) * max(1, math.ceil(rows / max(1, int(batch_size)))))


def build_ensemble(members: list[keras.Model]) -> keras.Model:
    """One model over the members' shared inputs whose output is each member's
    units side by side, ``(rows, len(members))``: one artifact file, one
    forward pass for the server. A single member is returned as it is."""
    if len(members) == 1:
        return members[0]
    for k, m in enumerate(members):
        m.name = f"member_{k}"  # unique names inside the one model
    first = members[0]
    inputs = {
        name: keras.Input(shape=t.shape[1:], dtype=t.dtype, name=name) for name, t in _named_inputs(first)
    }
    outs = [m(inputs) for m in members]
    return keras.Model(inputs=inputs, outputs=layers.Concatenate(name="members")(outs), name="roi_ensemble")


def _named_inputs(model: keras.Model) -> list[tuple[str, Any]]:
    return [(t.name.split(":")[0] if hasattr(t, "name") else str(i), t) for i, t in enumerate(model.inputs)]
