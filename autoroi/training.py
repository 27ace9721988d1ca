"""The steps of ``train`` around the model code: which master version to train
on, where each step leaves its files, and what the registry receives.

The ``train`` pipeline passes files between its steps as KFP artifacts
(folders); this module names them, so a component body is a few lines and the
same functions serve ``autoroi trigger`` and the benchmarks. Every step reads
the one master version that ``tune`` resolved, never ``latest`` again, so a
publish during a run cannot mix two versions in one model.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from autoroi.config import AutoroiConfig
from autoroi.errors import AutoroiError
from autoroi.lake.master import MasterStore
from autoroi.lake.storage import Lake

log = logging.getLogger(__name__)

TUNING_FILE = "tuning.json"
EVALUATION_FILE = "evaluation.json"
PREDICTIONS_FILE = "predictions.parquet"
ROI_FILE = "roi.parquet"
MODEL_DIR = "model"
PROGRAMS_FILE = "programs.json"  # beside the model folder: the fit step's program ROI, for the report


class TrainingInputError(AutoroiError):
    """The lake or the config cannot feed a training run (no master table,
    an unreadable truth file, a step's files missing)."""


# --------------------------------------------------------------------------- inputs


def resolve_master(lake: Lake, version: str | None = None) -> str:
    """The master version a run trains on: ``version`` if given (it must
    exist), else the one ``latest`` points at."""
    store = MasterStore(lake)
    if version:
        if store.manifest(version) is None:
            raise TrainingInputError(f"master version {version} does not exist in lake {lake.uri}")
        return version
    pointer = store.latest()
    if pointer is None:
        raise TrainingInputError(
            f"no master table has been published in lake {lake.uri}: run `autoroi run ingest` first"
        )
    return str(pointer["version"])


def read_master(lake: Lake, version: str) -> pd.DataFrame:
    return MasterStore(lake).read(version).to_pandas()


def read_truth(cfg: AutoroiConfig) -> pd.DataFrame | None:
    """The simulator's ground truth, if the config names one (evaluation only)."""
    path = cfg.training.truth_path
    if not path:
        return None
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as e:
        raise TrainingInputError(f"training.truth_path {path}: cannot read the ground truth: {e}") from e


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise TrainingInputError(f"{what}: {path} is missing") from e
    except json.JSONDecodeError as e:
        raise TrainingInputError(f"{what}: {path} is not valid JSON: {e}") from e
    if not isinstance(doc, dict):
        raise TrainingInputError(f"{what}: {path} does not hold an object")
    return doc


# --------------------------------------------------------------------------- tune


def run_tuning(lake: Lake, cfg: AutoroiConfig, master_version: str, directory: str | Path) -> dict[str, Any]:
    """Keras Tuner search on the master version; the tuner's project and a
    ``tuning.json`` summary go to ``directory`` (the step's artifact). A fresh
    artifact folder every run, so ``overwrite`` only matters for a directory
    reused on purpose (``autoroi`` never does; ``tune_hyperparameters`` refuses
    a reused one that holds a different search)."""
    from autoroi.evaluation.folds import holdout_split
    from autoroi.model import features as F
    from autoroi.model.tuning import tune_hyperparameters

    t = cfg.training
    frame = F.training_frame(read_master(lake, master_version))
    train, val = holdout_split(frame, t.validation_weeks)
    args = (train, val, t.search_space, t.max_trials, t.max_seconds, t.seed, directory, True)
    if t.tuner_workers:
        from autoroi.model.distributed import tune_distributed

        result = tune_distributed(*args, workers=t.tuner_workers, epochs=t.epochs, patience=t.patience)
    else:
        result = tune_hyperparameters(*args, epochs=t.epochs, patience=t.patience)
    doc = {
        **result.to_dict(),
        "master_version": master_version,
        "epochs": chosen_epochs(cfg, result.best_epochs),
    }
    Path(directory).mkdir(parents=True, exist_ok=True)
    (Path(directory) / TUNING_FILE).write_text(json.dumps(doc, indent=2, default=str))
    return doc


def chosen_epochs(cfg: AutoroiConfig, best_epochs: int) -> int:
    """The backtest's and the final fit's epochs: ``training.final_epochs`` or
    the best trial's (at least one)."""
    return int(cfg.training.final_epochs or max(1, best_epochs))


def read_tuning(directory: str | Path) -> dict[str, Any]:
    return _read_json(Path(directory) / TUNING_FILE, "tuning result")


# --------------------------------------------------------------------------- validate


def _production_model(lake: Lake) -> tuple[Any, str | None]:
    """The deployed model (to gate against), loaded from the registry."""
    from autoroi.model.artifact import load_model
    from autoroi.registry import fetch_artifact, production_version

    prod = production_version(lake)
    if prod is None:
        return None, None
    dest = Path(tempfile.mkdtemp(prefix="autoroi-production-"))
    return load_model(fetch_artifact(lake, prod.version, dest / MODEL_DIR)), prod.version


def run_validation(
    lake: Lake,
    cfg: AutoroiConfig,
    master_version: str,
    hyperparameters: Mapping[str, Any],
    epochs: int,
    directory: str | Path,
) -> dict[str, Any]:
    """Backtest and gates; leaves ``evaluation.json`` (metrics, folds, gate
    decision) and the prediction and ROI tables in ``directory``."""
    from autoroi.evaluation.validate import validate_model

    production, production_name = _production_model(lake)
    result = validate_model(
        read_master(lake, master_version),
        hyperparameters,
        epochs,
        cfg.training,
        truth=read_truth(cfg),
        production=production,
    )
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        **result.to_dict(),
        "master_version": master_version,
        "hyperparameters": dict(hyperparameters),
        "epochs": epochs,
        "production_version": production_name,
        "truth": bool(cfg.training.truth_path),
    }
    (out / EVALUATION_FILE).write_text(json.dumps(doc, indent=2, default=str))
    result.backtest.predictions.to_parquet(out / PREDICTIONS_FILE, index=False)
    result.backtest.roi.to_parquet(out / ROI_FILE, index=False)
    log.info(
        "validation of master %s: gates %s", master_version, "passed" if result.decision.passed else "FAILED"
    )
    return doc


def read_evaluation(directory: str | Path) -> tuple[dict[str, Any], pd.DataFrame | None, pd.DataFrame | None]:
    d = Path(directory)
    doc = _read_json(d / EVALUATION_FILE, "evaluation")
    frames = [
        pd.read_parquet(d / name) if (d / name).exists() else None for name in (PREDICTIONS_FILE, ROI_FILE)
    ]
    return doc, frames[0], frames[1]


def gate_markdown(gate: Mapping[str, Any], metrics: Mapping[str, Mapping[str, Any]]) -> str:
    """The gate decision and the models' headline metrics as Markdown (the
    ``validate`` step's artifact in the Kubeflow UI)."""
    head = "**Gates passed**" if gate.get("passed") else "**Gates failed**"
    lines = [head, "", "| check | result | detail |", "| --- | --- | --- |"]
    for c in gate.get("checks") or []:
        lines.append(f"| {c['name']} | {'pass' if c['passed'] else 'FAIL'} | {c['detail']} |")
    cols = ["wape", "mae", "rmse", "roi_mae", "roi_bias", "roi_spearman", "roi_balanced_accuracy", "roi_auc"]
    lines += ["", "| model | " + " | ".join(cols) + " |", "| --- |" + " --- |" * len(cols)]
    for name, m in metrics.items():
        cells = [f"{m[c]:.4g}" if isinstance(m.get(c), int | float) else "—" for c in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- fit


def run_fit(
    lake: Lake,
    cfg: AutoroiConfig,
    master_version: str,
    hyperparameters: Mapping[str, Any],
    epochs: int,
    directory: str | Path,
) -> Path:
    """Final fit on every row of the master version; the artifact goes to
    ``directory/model``, with the smoke-test samples recorded in it."""
    from autoroi.deploy.smoke import record_samples
    from autoroi.model.artifact import save_model
    from autoroi.model.train import train_model

    master = read_master(lake, master_version)
    model = train_model(
        master,
        hyperparameters,
        epochs=epochs,
        seed=cfg.training.seed,
        metadata={"master_version": master_version},
        members=cfg.training.ensemble_members,
    )
    path = save_model(Path(directory) / MODEL_DIR, model, overwrite=True)
    record_samples(path, master)  # the deploy pipeline's smoke test replays these
    write_programs(lake, cfg, model, Path(directory) / PROGRAMS_FILE)
    return path


def estimate_programs(lake: Lake, cfg: AutoroiConfig, model: Any) -> tuple[pd.DataFrame | None, int]:
    """Every program in the lake's curated zone as ``model`` estimates it
    (``autoroi.model.programs``), beside the truth when the config names one;
    and how many program cell-weeks fall outside the model's cells. None when
    the curated zone has no program tables."""
    from autoroi.lake.datasets import read_zone
    from autoroi.model.programs import PROGRAM_TABLES, program_roi, program_scenarios, true_program_roi

    tables = read_zone(lake, "curated", columns={k: list(v) for k, v in PROGRAM_TABLES.items()})
    if set(PROGRAM_TABLES) - set(tables):
        return None, 0
    first, last = model.metadata["weeks"]
    out, skipped = program_roi(model, program_scenarios(tables, first, last))
    truth = read_truth(cfg)
    if truth is not None:
        out = out.merge(true_program_roi(truth, first, last), on="program_id", how="left")
    return out, skipped


def write_programs(lake: Lake, cfg: AutoroiConfig, model: Any, path: Path) -> int:
    """:func:`estimate_programs` as JSON records for the report; how many
    programs (0, and no file, when the lake has no program tables)."""
    out, skipped = estimate_programs(lake, cfg, model)
    if out is None:
        log.info("no program tables in the curated zone: no program report")
        return 0
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(out.to_json(orient="records"), encoding="utf-8")
    tmp.replace(path)
    log.info("program ROI of %d programs (%d cell-weeks outside the model's cells)", len(out), skipped)
    return len(out)


# --------------------------------------------------------------------------- register


def register_candidate(
    lake: Lake,
    cfg: AutoroiConfig,
    master_version: str,
    model_dir: str | Path,
    evaluation_dir: str | Path,
    tuning_dir: str | Path,
    *,
    now: dt.datetime | None = None,
    trained_because: str = "",
) -> Any:
    """Register the fitted model with its evaluation and report, as
    ``pending_approval`` when the gates passed and ``rejected_by_gate``
    otherwise; returns the ``ModelVersion``. ``trained_because``: what
    started the run (a new master version, a degraded monitor), for the
    reviewer."""
    import pyarrow.fs as pafs

    from autoroi.registry import PENDING_APPROVAL, REJECTED_BY_GATE, new_version, register_model, tree_digest
    from autoroi.release import code_version
    from autoroi.report import render_report

    model_path = Path(model_dir)
    if (model_path / MODEL_DIR).is_dir():
        model_path = model_path / MODEL_DIR
    evaluation, predictions, roi = read_evaluation(evaluation_dir)
    programs_file = Path(model_dir) / PROGRAMS_FILE
    programs = json.loads(programs_file.read_text(encoding="utf-8")) if programs_file.is_file() else None
    tuning = read_tuning(tuning_dir)
    if evaluation.get("master_version") != master_version or tuning.get("master_version") != master_version:
        raise TrainingInputError(
            f"the steps of this run disagree on the master version: tune {tuning.get('master_version')},"
            f" validate {evaluation.get('master_version')}, register {master_version}"
        )
    gate = evaluation["gates"]
    status = PENDING_APPROVAL if gate.get("passed") else REJECTED_BY_GATE
    now = now or dt.datetime.now(dt.UTC)
    digest = tree_digest(pafs.LocalFileSystem(), str(model_path.resolve()))
    version = new_version(digest, now)
    metrics = evaluation["metrics"]
    candidate = metrics.get("candidate", {})
    tuning_summary = {
        k: tuning.get(k)
        for k in ("best_hyperparameters", "best_epochs", "best_score", "stopped_by", "seconds", "resumed")
    }
    report = render_report(
        version=version,
        gate=gate,
        metrics=metrics,
        master_version=master_version,
        digest=digest,
        code_version=code_version(),
        created_at=now.isoformat(timespec="seconds"),
        status=status,
        oracle=evaluation.get("oracle") or None,
        predictions=predictions,
        roi=roi,
        trials=tuning.get("trials"),
        tuning=tuning_summary,
        hyperparameters=evaluation.get("hyperparameters"),
        fold_metrics=evaluation.get("fold_metrics"),
        folds=evaluation.get("folds"),
        programs=programs,
    )
    metadata = {
        "master_version": master_version,
        "trained_because": trained_because or None,
        "metrics": {k: v for k, v in candidate.items() if v is not None},
        "gate": gate,
        "hyperparameters": evaluation.get("hyperparameters"),
        "epochs": evaluation.get("epochs"),
        "baselines": {k: v for k, v in metrics.items() if k != "candidate"},
        "oracle": evaluation.get("oracle") or None,
        "production_version": evaluation.get("production_version"),
        "tuning": tuning_summary,
    }
    return register_model(lake, model_path, metadata, evaluation, report, status, version=version, now=now)


# --------------------------------------------------------------------------- trigger


@dataclass(frozen=True)
class TriggerDecision:
    """Whether ``train`` should run: the latest master version has no model
    version trained on it yet."""

    train: bool
    master_version: str | None
    trained_versions: tuple[str, ...]
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def needs_training(lake: Lake) -> TriggerDecision:
    from autoroi.registry import list_versions

    pointer = MasterStore(lake).latest()
    if pointer is None:
        return TriggerDecision(False, None, (), "no master table has been published yet")
    master = str(pointer["version"])
    trained = tuple(v.version for v in list_versions(lake) if v.master_version == master)
    if trained:
        return TriggerDecision(
            False,
            master,
            trained,
            f"master version {master} already has model version(s) {', '.join(trained)}",
        )
    return TriggerDecision(True, master, (), f"master version {master} has no model version yet")
