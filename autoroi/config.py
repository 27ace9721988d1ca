"""The one typed configuration model.

Loaded once at the edge (CLI, component entry) from defaults < YAML file <
``AUTOROI_*`` environment < command-line flags, validated, and passed down.
Secrets are never values here: the model names the environment variable or
mounted file that holds them, so the config can be printed, logged and passed
as a pipeline parameter.
"""

from __future__ import annotations

import os
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from autoroi.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceConfig(_Section):
    url: str = Field("sqlite:///var/source/dms.sqlite", description="SQLAlchemy URL of the dealer database")
    password_env: str = Field(
        "AUTOROI_SOURCE_PASSWORD", description="environment variable holding the database password"
    )
    password_file: Path | None = Field(None, description="mounted secret file holding the password")
    tables: list[str] | None = Field(None, description="tables to replicate; default: every table")
    connect_timeout_s: int = Field(10, ge=1)


class LakeConfig(_Section):
    uri: str = Field("var/lake", description="local folder or s3://bucket/prefix")
    s3_endpoint_url: str | None = Field(None, description="S3-compatible endpoint (MinIO, moto)")
    s3_region: str = "us-east-1"
    stale_after_s: float = Field(
        6 * 3600.0,
        gt=0,
        description="age after which a temporary left by a writer on another machine (whose liveness"
        " cannot be checked from here) is removed; those of dead writers on this machine go at once",
    )


class ReplicationConfig(_Section):
    lookback_seconds: float = Field(
        300.0, ge=0, description="re-read rows this much older than the watermark (late commits)"
    )
    batch_rows: int = Field(250_000, ge=1_000, description="rows per Arrow batch while streaming")
    file_rows: int = Field(
        250_000, ge=1_000, description="rows per Parquet file in the lake (a change rewrites whole files)"
    )
    key_bucket_width: int = Field(
        65_536, ge=16, le=1_000_000, description="primary-key range per delete-check bucket"
    )
    compression: str = "zstd"
    keep_versions: int = Field(2, ge=1, description="table versions kept for readers in flight")
    delete_capture: Literal["auto", "logical", "reconcile"] = Field(
        "auto",
        description="how deletes are found: PostgreSQL logical decoding through a replication slot"
        " (logical), per-bucket key reconciliation (reconcile), or logical where the source allows it (auto)",
    )
    logical_plugin: Literal["auto", "pgoutput", "test_decoding"] = Field(
        "auto",
        description="output plugin of the slot: pgoutput with a publication of deletes and truncates only"
        " (the cheaper to read; creating it needs superuser or ownership of the tables), test_decoding"
        " (needs only REPLICATION; formats every changed row), or pgoutput where possible (auto)",
    )
    slot_name: str | None = Field(
        None,
        pattern=r"^[a-z0-9_]{1,63}$",
        description="PostgreSQL logical replication slot (default: autoroi_ and a hash of the lake URI"
        " and the database, so that two lakes never share one)",
    )
    verify_every_runs: int = Field(
        0,
        ge=0,
        description="with logical decoding, also reconcile keys on every N-th run that publishes the"
        " table (0: never)",
    )

    @field_validator("compression")
    @classmethod
    def _known_codec(cls, v: str) -> str:
        if v not in {"zstd", "snappy", "gzip", "none"}:
            raise ValueError("compression must be one of zstd, snappy, gzip, none")
        return v


class StepResources(_Section):
    """Kubernetes requests and limits of a heavy step (ignored by kfp.local)."""

    cpu_request: str = Field("2", pattern=r"^\d+(\.\d+)?m?$")
    cpu_limit: str = Field("4", pattern=r"^\d+(\.\d+)?m?$")
    memory_request: str = Field("4Gi", pattern=r"^\d+(\.\d+)?([KMGT]i?)?$")
    memory_limit: str = Field("8Gi", pattern=r"^\d+(\.\d+)?([KMGT]i?)?$")


class KfpConfig(_Section):
    image_registry: str = Field("ghcr.io/autoroi", description="registry and namespace of autoroi's images")
    image_tag: str | None = Field(
        None, description="tag of every image; default: the git commit being compiled (CI pushes that tag)"
    )
    base_image: str | None = Field(
        None, description="image of lightweight components (default: <registry>/components)"
    )
    spark_image: str | None = Field(
        None, description="image of preprocess, with a JRE (default: <registry>/spark)"
    )
    trainer_image: str | None = Field(
        None, description="image with TensorFlow for tune, validate and fit (default: <registry>/trainer)"
    )
    train_resources: StepResources = Field(
        default_factory=StepResources, description="requests and limits of tune, validate and fit"
    )
    pipeline_root: str = Field("var/kfp", description="where kfp.local keeps run artifacts")

    def image(self, kind: str) -> str:
        """The image for ``kind`` (components, spark, trainer): the explicit
        setting, else ``<registry>/<kind>:<tag>`` (tag ``latest`` when unset;
        compiling pins it to the commit)."""
        explicit = {"components": self.base_image, "spark": self.spark_image, "trainer": self.trainer_image}
        return explicit.get(kind) or f"{self.image_registry.rstrip('/')}/{kind}:{self.image_tag or 'latest'}"


class ClusterConfig(_Section):
    """How pipeline pods get their secrets and nodes on Kubernetes
    (``kfp-kubernetes``; ignored by ``kfp.local``). Secrets reach the steps as
    environment variables from Kubernetes Secrets, never as parameters. Only
    replicate and anonymize get the credentials that can read the lake's raw
    zone; every other step gets ``lake_secret``, which cannot."""

    lake_raw_secret: str = Field("autoroi-lake-raw", description="S3 credentials with raw/ access")
    lake_secret: str = Field("autoroi-lake-s3", description="S3 credentials without raw/ access")
    s3_access_key_key: str = Field(
        "AWS_ACCESS_KEY_ID", description="key of the access key id in both Secrets"
    )
    s3_secret_key_key: str = Field(
        "AWS_SECRET_ACCESS_KEY", description="key of the secret key in both Secrets"
    )
    db_secret: str = Field("autoroi-source-db", description="Secret with the source database password")
    db_password_key: str = Field("password")
    hmac_secret: str = Field("autoroi-hmac", description="Secret with the pseudonymization key")
    hmac_key_key: str = Field("key")
    notify_secret: str | None = Field(
        None,
        description="Secret with the reviewer webhook URL (key webhook_url), if the webhook channel is used",
    )
    gpu_trainer: bool = Field(False, description="run tune and fit on a GPU node")
    gpu_node_selector: dict[str, str] = Field(
        default_factory=lambda: {"nvidia.com/gpu.present": "true"}, description="node labels of GPU nodes"
    )
    gpu_toleration_key: str = Field("nvidia.com/gpu", description="taint key GPU nodes carry")
    retries: int = Field(2, ge=0, le=10, description="retries of steps that talk to the database, S3 or APIs")
    image_pull_secret: str | None = Field(None, description="Secret for pulling from a private registry")
    service_account: str = Field(
        "autoroi-pipeline-runner",
        description="ServiceAccount runs are submitted with (manifests/base creates it)",
    )
    run_as_user: int = Field(10001, ge=1, description="non-root uid of every step (restricted Pod Security)")
    spark_config_map: str = Field(
        "autoroi-spark", description="Spark on Kubernetes: ConfigMap with spark-defaults.conf for preprocess"
    )


Treatment = Literal["keep", "pseudonymize", "age_band", "zip3"]

# What reaches lake/curated/: every column not listed here is dropped (fail
# closed); a new source column stays out until someone adds it.
DEFAULT_ALLOW_LIST: dict[str, dict[str, Treatment]] = {
    "regions": {"region_id": "keep", "name": "keep", "super_region": "keep", "updated_at": "keep"},
    "dealers": {
        "dealer_id": "pseudonymize",
        "region_id": "keep",
        "size_class": "keep",
        "updated_at": "keep",
    },
    "customers": {
        "customer_id": "pseudonymize",
        "birth_date": "age_band",
        "zip": "zip3",
        "region_id": "keep",
        "created_at": "keep",
        "updated_at": "keep",
    },
    "vehicle_models": {
        "model_id": "keep",
        "name": "keep",
        "segment": "keep",
        "msrp": "keep",
        "unit_margin": "keep",
        "launched_on": "keep",
        "updated_at": "keep",
    },
    "incentive_programs": {
        "program_id": "keep",
        "code": "keep",
        "incentive_type": "keep",
        "amount": "keep",
        "start_date": "keep",
        "end_date": "keep",
        "budget": "keep",
        "updated_at": "keep",
    },
    "program_eligibility": {
        "eligibility_id": "keep",
        "program_id": "keep",
        "region_id": "keep",
        "model_id": "keep",
        "updated_at": "keep",
    },
    "sales": {
        "sale_id": "keep",
        "dealer_id": "pseudonymize",
        "customer_id": "pseudonymize",
        "model_id": "keep",
        "sale_date": "keep",
        "sale_price": "keep",
        "program_id": "keep",
        "incentive_amount": "keep",
        "financing_type": "keep",
        "apr": "keep",
        "term_months": "keep",
        "trade_in_value": "keep",
        "is_fleet": "keep",
        "created_at": "keep",
        "updated_at": "keep",
    },
}


class AnonymizeConfig(_Section):
    hmac_key_env: str = Field(
        "AUTOROI_HMAC_KEY", description="environment variable holding the pseudonymization key (>= 32 bytes)"
    )
    hmac_key_file: Path | None = Field(None, description="mounted secret file holding the key")
    zip3_min_customers: int = Field(
        20, ge=1, description='ZIP3 areas with fewer customers than this become "000"'
    )
    age_band_edges: list[int] = Field(
        [18, 25, 35, 45, 55, 65, 75, 90], description="lower edges of the age bands; the last is open (90+)"
    )
    allow: dict[str, dict[str, Treatment]] = Field(
        default_factory=lambda: {t: dict(c) for t, c in DEFAULT_ALLOW_LIST.items()},
        description="per table, the columns that may reach curated/ and their treatment",
    )

    @field_validator("age_band_edges")
    @classmethod
    def _increasing(cls, v: list[int]) -> list[int]:
        if not v or any(b <= a for a, b in pairwise(v)) or v[0] < 0:
            raise ValueError("age_band_edges must be non-negative and strictly increasing")
        return v


class SparkConfig(_Section):
    master: str = Field("local[*]", description="spark.master: local[*] or k8s://https://...")
    app_name: str = "autoroi-preprocess"
    conf: dict[str, str] = Field(
        default_factory=lambda: {
            "spark.sql.shuffle.partitions": "4",
            "spark.sql.adaptive.enabled": "true",
            "spark.sql.execution.arrow.pyspark.enabled": "true",
            "spark.sql.session.timeZone": "UTC",
            "spark.driver.memory": "2g",
            "spark.ui.enabled": "false",
        },
        description="further Spark settings, passed to the session builder as they are",
    )


class MasterConfig(_Section):
    k: int = Field(5, ge=1, description="k-anonymity: distinct dealers every published cell aggregates")
    spark: SparkConfig = SparkConfig()


class ValidationConfig(_Section):
    max_row_count_change: float = Field(
        0.5, ge=0, description="largest relative change of the row count versus the previous master"
    )
    max_mean_units_change: float = Field(
        0.5, ge=0, description="largest relative change of mean weekly units versus the previous master"
    )
    max_staleness_days: int | None = Field(
        None, ge=0, description="newest week must start within this many days of the run (None: off)"
    )


# hyperparameters of autoroi.model.network (kept equal to its DEFAULT_HYPERPARAMETERS by a test;
# not imported from there, so that reading the config does not load TensorFlow)
HYPERPARAMETER_NAMES = (
    "layers",
    "units",
    "embedding_dim",
    "lift_units",
    "learning_rate",
    "dropout",
    "batch_size",
)


class ParamRange(_Section):
    """A numeric search range: ``min`` to ``max``, linear (optionally in ``step``s) or log sampling."""

    min: float
    max: float
    sampling: Literal["linear", "log"] = "linear"
    step: float | None = Field(None, gt=0)

    @field_validator("max")
    @classmethod
    def _ordered(cls, v: float, info: Any) -> float:
        lo = info.data.get("min")
        if lo is not None and v <= lo:
            raise ValueError("max must be greater than min")
        return v


def _default_search_space() -> dict[str, list[int] | list[float] | ParamRange]:
    return {
        "layers": [1, 2, 3],
        "units": [32, 64, 128],
        "embedding_dim": [4, 8, 16],
        "lift_units": [8, 16, 32],
        "learning_rate": ParamRange(min=1e-3, max=1e-2, sampling="log"),
        "dropout": [0.0, 0.1, 0.2],
        "batch_size": [128, 256, 512],
    }


class GateConfig(_Section):
    wape_max: float = Field(
        0.6, gt=0, description="largest units WAPE (backtest, pooled over folds) a candidate may have"
    )
    production_tolerance: float = Field(
        0.05,
        ge=0,
        description="the candidate's WAPE may exceed the production model's by this relative margin",
    )
    must_beat: list[str] = Field(
        default_factory=lambda: ["seasonal_naive"], description="baselines whose WAPE the candidate must beat"
    )
    step_margin: float | None = Field(
        0.2,
        description="at the backtest's program starts and ends (no ground truth), the candidate's predicted"
        " jump over the actual one must exceed the seasonal naive's (a model blind to incentives) by this;"
        " null: no check",
    )


class TrainingConfig(_Section):
    search_space: dict[str, list[int] | list[float] | ParamRange] = Field(
        default_factory=_default_search_space,
        description="per hyperparameter: a list of choices or a range; names as in autoroi.model.network",
    )
    max_trials: int = Field(6, ge=1, description="Keras Tuner trials at most")
    max_seconds: float = Field(60.0, gt=0, description="wall-clock budget of the search")
    tuner_workers: int = Field(
        0,
        ge=0,
        le=64,
        description="0: the search runs in the tune step's process; N: Keras Tuner's distributed mode, a"
        " chief (the oracle, gRPC on loopback) and N worker processes in the step's pod (give it N cores)",
    )
    epochs: int = Field(20, ge=1, description="epochs per trial at most (early stopping ends most sooner)")
    patience: int = Field(3, ge=1, description="early-stopping patience in epochs")
    validation_weeks: int = Field(8, ge=1, description="last weeks held out to score tuning trials")
    seed: int = Field(42, ge=0)
    folds: int = Field(3, ge=3, description="rolling-origin backtest folds")
    fold_weeks: int = Field(8, ge=1, description="test weeks per fold")
    min_train_weeks: int = Field(52, ge=1, description="training weeks before the first fold at least")
    final_epochs: int | None = Field(
        None, ge=1, description="epochs of the backtest and final fit (default: the best trial's epochs)"
    )
    gbm_iterations: int = Field(100, ge=1, description="boosting iterations of the hist_gbm baseline")
    ensemble_members: int = Field(
        5,
        ge=1,
        le=32,
        description="networks of the final fit (a deep ensemble on bootstrap reweightings of the cells):"
        " the served ROI interval comes from their spread; 1: no interval",
    )
    on_master_change: bool = Field(
        True, description="ingest runs train (nested, dsl.If) when it published a new master version"
    )
    on_degraded: bool = Field(
        True,
        description="ingest trains a new version when its monitor step finds the deployed model degraded,"
        " even when the master change alone would not (train_on_change off)",
    )
    truth_path: str | None = Field(
        None,
        description="ground truth of a simulated source (autoroi generate --truth): scored against in"
        " validation only (ROI MAE, Spearman, sign agreement); never a training input",
    )
    gates: GateConfig = GateConfig()

    @field_validator("search_space")
    @classmethod
    def _known_names(cls, v: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(v) - set(HYPERPARAMETER_NAMES))
        if unknown:
            raise ValueError(f"unknown hyperparameters {unknown}; known: {', '.join(HYPERPARAMETER_NAMES)}")
        for name, choices in v.items():
            if isinstance(choices, list) and not choices:
                raise ValueError(f"{name}: an empty list of choices")
        return v


NotifyChannel = Literal["log", "webhook", "sns"]


def _default_channels() -> list[NotifyChannel]:
    return ["log"]


class NotifyConfig(_Section):
    """Where the reviewer of a new model version is told (``autoroi.notify``)."""

    channels: list[NotifyChannel] = Field(
        default_factory=_default_channels,
        min_length=1,
        description="log (the step's log), webhook (Slack-compatible JSON POST), sns (AWS SNS topic)",
    )
    webhook_url_env: str = Field(
        "AUTOROI_NOTIFY_WEBHOOK_URL",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="environment variable holding the webhook URL (a secret: it carries the token)",
    )
    sns_topic_arn: str | None = Field(
        None, pattern=r"^arn:aws[a-z-]*:sns:", description="SNS topic for the sns channel"
    )
    sns_endpoint_url: str | None = Field(None, description="SNS-compatible endpoint (moto, LocalStack)")
    timeout_s: float = Field(10.0, gt=0, le=300, description="per-request timeout of webhook and SNS")


class ServingConfig(_Section):
    """Where approved versions run (``deploy`` pipeline, ``autoroi serve``)."""

    target: Literal["local", "docker", "kserve"] = Field(
        "local",
        description="local: model server processes on this machine; docker: model server containers of"
        " `image` on this machine (for deploy steps that run in containers); kserve: an InferenceService",
    )
    state_dir: str = Field("var/serving", description="local and docker targets: endpoint.json, server logs")
    docker_socket: str = Field(
        "/var/run/docker.sock", description="docker target: the Docker Engine API's unix socket"
    )
    host: str = Field("127.0.0.1", description="local endpoint and model servers listen here")
    port: int = Field(8080, ge=1, le=65535, description="local endpoint (router and dashboard) port")
    max_batch: int = Field(1024, ge=1, description="most scenarios per request (larger: HTTP 413)")
    access_log: bool = Field(False, description="one log line per request on the model server")
    ready_timeout_s: float = Field(300.0, gt=0, description="how long a new version may take to be ready")
    smoke_rtol: float = Field(1e-4, ge=0, description="relative tolerance of the smoke test")
    smoke_atol: float = Field(1e-6, ge=0, description="absolute tolerance of the smoke test")
    canary_percent: int = Field(
        10, ge=1, le=99, description="kserve: traffic to a new version before promotion"
    )
    namespace: str = Field("autoroi", description="kserve: namespace of the InferenceService")
    image: str = Field(
        "ghcr.io/autoroi/serving:latest", description="kserve and docker: the model server image"
    )
    in_cluster: bool | None = Field(
        None, description="kserve: in-cluster credentials (default: try, then kubeconfig)"
    )
    kubeconfig: str | None = Field(None, description="kserve: kubeconfig file (default: the usual lookup)")
    kube_context: str | None = Field(None, description="kserve: kubeconfig context")
    min_replicas: int = Field(
        1, ge=0, description="kserve: fewest predictor pods (0 lets Knative scale an idle version to zero)"
    )
    max_replicas: int = Field(3, ge=1, description="kserve: most predictor pods the autoscaler may start")
    scale_metric: Literal["concurrency", "rps"] = Field(
        "concurrency",
        description="kserve: what Knative's autoscaler watches (the Serverless mode autoroi deploys in;"
        " cpu and memory are for RawDeployment's HPA)",
    )
    scale_target: int = Field(
        8,
        ge=1,
        description="kserve: the value of scale_metric per pod the autoscaler aims at (concurrency: requests"
        " in flight per pod)",
    )

    @model_validator(mode="after")
    def _replicas_in_order(self) -> ServingConfig:
        if self.max_replicas < self.min_replicas:
            raise ValueError(
                f"serving.max_replicas ({self.max_replicas}) is below"
                f" serving.min_replicas ({self.min_replicas})"
            )
        return self


class MonitoringConfig(_Section):
    """The loop after serving: the prediction log and ingest's ``monitor`` step."""

    log_predictions: bool = Field(
        True,
        description="record every answered request in <lake>/predictions/roi/ (KServe's logger on a cluster)",
    )
    sink_url: str | None = Field(
        None,
        description="where the payload logger posts its CloudEvents (default: the local sink; on kserve the"
        " roi-prediction-sink Service of serving.namespace)",
    )
    sink_port: int = Field(8091, ge=1, le=65535, description="local prediction sink's port")
    batch_rows: int = Field(500, ge=1, le=1_000_000, description="predictions per Parquet file at most")
    flush_s: float = Field(
        5.0, gt=0, le=3600, description="a batch is written at the latest this long after its first row"
    )
    enabled: bool = Field(
        True, description="ingest runs `monitor` after publish whenever a version is deployed"
    )
    wape_ratio_max: float = Field(
        1.5,
        gt=1,
        description="degraded: the realized units WAPE over the model's own backtest WAPE exceeds this",
    )
    group_bias_max: float = Field(
        0.15,
        gt=0,
        description="degraded: a region's or segment's realized over predicted units (relative to all"
        " rows) is off by more than this share, by several standard errors",
    )
    min_group_units: float = Field(
        50.0, ge=0, description="region x segment groups with fewer realized units are not judged alone"
    )
    lift_ratio_range: tuple[float, float] = Field(
        (0.6, 1.6),
        description="degraded: a type's realized over predicted lift, against its backtest's or its own"
        " earlier weeks', falls outside (by several standard errors)",
    )
    min_program_units: float = Field(
        20.0, ge=0, description="predicted incremental units below which the lift ratio is not judged"
    )
    drift_threshold: float = Field(
        0.2, gt=0, description="drift: a feature's population stability index (PSI) above this"
    )
    max_weeks: int = Field(
        13, ge=1, le=156, description="observed weeks after the model's data that are scored at most"
    )


class AutoroiConfig(_Section):
    """Effective configuration; see ``autoroi config show``."""

    source: SourceConfig = SourceConfig()
    lake: LakeConfig = LakeConfig()
    replication: ReplicationConfig = ReplicationConfig()
    anonymize: AnonymizeConfig = AnonymizeConfig()
    master: MasterConfig = MasterConfig()
    validation: ValidationConfig = ValidationConfig()
    kfp: KfpConfig = KfpConfig()
    training: TrainingConfig = TrainingConfig()
    notify: NotifyConfig = NotifyConfig()
    serving: ServingConfig = ServingConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    cluster: ClusterConfig = ClusterConfig()


ENV_PREFIX = "AUTOROI_"


def env_overrides(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """``AUTOROI_<SECTION>__<FIELD>=value`` as nested overrides; values are
    read as YAML scalars (numbers, booleans, lists). Variables without ``__``
    (secrets such as ``AUTOROI_SOURCE_PASSWORD``) are not configuration."""
    environ = dict(os.environ) if environ is None else environ
    out: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return out


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> AutoroiConfig:
    """Read the YAML file, apply ``AUTOROI_*`` variables, then ``overrides``
    (nested dicts from command-line flags), and validate once."""
    file_values: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise ConfigError(f"config file not found: {p}") from e
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {p} is not valid YAML: {e}") from e
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {p} must hold a mapping at the top level")
        file_values = loaded or {}
    merged = _deep_merge(_deep_merge(file_values, env_overrides()), overrides or {})
    try:
        return AutoroiConfig.model_validate(merged)
    except ValidationError as e:
        raise ConfigError(_describe(e)) from e


def config_from_json(text: str) -> AutoroiConfig:
    """The form a pipeline parameter carries. The environment is not consulted
    again: the edge that built it already applied it."""
    try:
        return AutoroiConfig.model_validate_json(text)
    except ValidationError as e:
        raise ConfigError(_describe(e)) from e


def _describe(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        where = ".".join(str(x) for x in err["loc"]) or "config"
        parts.append(f"{where}: {err['msg']}")
    return "invalid configuration: " + "; ".join(parts)


def read_secret(env_name: str | None, file: Path | None = None) -> str | None:
    """A secret from a mounted file (Kubernetes secret volume) or an environment
    variable; ``None`` when neither is set."""
    if file is not None:
        try:
            return Path(file).read_text(encoding="utf-8").strip()
        except OSError as e:
            raise ConfigError(f"secret file {file} cannot be read: {e.strerror}") from e
    if env_name:
        value = os.environ.get(env_name)
        if value:
            return value
    return None
