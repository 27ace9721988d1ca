"""``python -m serving.roi_server``: parse the arguments, load the model
version, start the KServe model server. KServe's own arguments
(``--http_port``, ``--grpc_port``, ``--enable_grpc``, ...) are accepted as
KServe documents them."""

from __future__ import annotations

import argparse
import logging
import warnings
from collections.abc import Sequence

from kserve import model_server as kserve_server

from autoroi.config import load_config
from autoroi.errors import AutoroiError
from autoroi.logs import setup_logging
from autoroi.serving.validation import DEFAULT_MAX_AMOUNT, DEFAULT_MAX_BATCH, Limits
from serving.roi_server.model import FAST_PATH_MODES, MODEL_NAME, RoiModelServer
from serving.roi_server.server import build_server


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m serving.roi_server",
        description="Serve one ROI model version over KServe's v1 and v2 REST protocols.",
        parents=[kserve_server.parser],
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model-dir", help="a model artifact folder (model.keras, preprocessing.json, ...)")
    source.add_argument("--lake", help="the lake holding the registry: a folder or s3://bucket/prefix")
    parser.add_argument("--version", help="the registry version to serve (with --lake)")
    parser.add_argument("--config", help="autoroi config file (lake S3 endpoint and region)")
    parser.add_argument(
        "--max-batch", type=int, default=DEFAULT_MAX_BATCH, help="most scenarios per request (else 413)"
    )
    parser.add_argument(
        "--max-amount",
        type=float,
        default=DEFAULT_MAX_AMOUNT,
        help="largest incentive amount per unit accepted (else 400)",
    )
    parser.add_argument("--log-level", default="INFO", help="log level of the server's own loggers")
    parser.add_argument(
        "--access-log",
        default=True,
        type=_flag,
        help="log one line per request (uvicorn's access log; true/false)",
    )
    parser.add_argument(
        "--fast-path",
        choices=FAST_PATH_MODES,
        default="auto",
        help="score through the precomputed, compiled fast path (auto: fall back to RoiModel.predict"
        " when it cannot be built for this artifact; on: refuse to start then; off: RoiModel.predict)",
    )
    # KServe's per-request timing lines ("kserve.trace": preprocess_ms/predict_ms per request, and
    # its timing middleware's): off unless asked for; Prometheus metrics carry the latencies
    parser.set_defaults(model_name=MODEL_NAME, enable_latency_logging=False)
    args = parser.parse_args(argv)
    if args.lake and not args.version:
        parser.error("--lake needs --version")
    if args.version and not args.lake:
        parser.error("--version goes with --lake")
    if args.max_batch < 1 or not args.max_amount > 0:
        parser.error("--max-batch and --max-amount must be positive")
    return args


def _flag(value: str) -> bool:
    return value.lower() in ("1", "true", "yes", "on")


def configure_request_logging(access_log: bool, latency_logging: bool) -> None:
    """Per-request log lines: uvicorn's access line (``access_log``) and
    KServe's timing lines on the ``kserve.trace`` logger (``latency_logging``;
    KServe's timing middleware writes there for every request whatever its
    own flag says, so the logger's level decides)."""
    logging.getLogger("uvicorn.access").setLevel(logging.INFO if access_log else logging.WARNING)
    logging.getLogger("kserve.trace").setLevel(logging.INFO if latency_logging else logging.WARNING)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging(args.log_level)
    # KServe 0.21 answers through FastAPI's ORJSONResponse, which FastAPI deprecates: not ours to fix
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")
    try:
        server = build_server(
            http_port=args.http_port,
            grpc_port=args.grpc_port,
            workers=args.workers,
            max_threads=args.max_threads,
            max_asyncio_workers=args.max_asyncio_workers,
            enable_grpc=args.enable_grpc,
            enable_docs_url=args.enable_docs_url,
            enable_latency_logging=args.enable_latency_logging,
            access_log_format=args.access_log_format,
        )
        # after the server: KServe configures its and uvicorn's loggers when it is created
        configure_request_logging(args.access_log, args.enable_latency_logging)
        model = RoiModelServer(
            args.model_name,
            model_dir=args.model_dir,
            lake_uri=args.lake,
            version=args.version,
            lake_config=load_config(args.config).lake,
            limits=Limits(max_batch=args.max_batch, max_amount=args.max_amount),
            fast_path=args.fast_path,
        )
        model.load()
    except (AutoroiError, ValueError) as e:
        raise SystemExit(f"roi server: {e}") from e
    server.start([model])


if __name__ == "__main__":
    main()
