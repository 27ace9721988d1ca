"""``python -m serving.prediction_sink``: the prediction sink (see ``app.py``
and ``store.py``); the lake and the batch settings default to the config's
``lake.uri`` and ``monitoring.*``."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    import uvicorn

    from autoroi.config import load_config
    from autoroi.lake.storage import open_lake
    from autoroi.logs import setup_logging
    from serving.prediction_sink.app import build_app
    from serving.prediction_sink.store import PredictionStore

    p = argparse.ArgumentParser(prog="python -m serving.prediction_sink", description=__doc__.split(";")[0])
    p.add_argument(
        "--journal-dir", required=True, help="the write-ahead journal's folder (kept across restarts)"
    )
    p.add_argument("--lake", default=None, help="the lake (folder or s3://); default: the config's lake.uri")
    p.add_argument("--config", default=None, help="autoroi config file (lake, monitoring.batch_rows/flush_s)")
    p.add_argument("--batch-rows", type=int, default=None, help="rows per Parquet file at most")
    p.add_argument("--flush-s", type=float, default=None, help="seconds from a batch's first row to its file")
    p.add_argument("--pair-timeout-s", type=float, default=600.0, help="how long an event waits for its pair")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8091)
    p.add_argument("--log-level", default="WARNING")
    p.add_argument(
        "--nice", type=int, default=0, help="lower the CPU priority (on a machine shared with the endpoint)"
    )
    args = p.parse_args(argv)
    if args.nice:
        os.nice(args.nice)
    setup_logging(args.log_level)
    cfg = load_config(args.config)
    store = PredictionStore(
        open_lake(args.lake or cfg.lake.uri, cfg.lake),
        args.journal_dir,
        batch_rows=args.batch_rows or cfg.monitoring.batch_rows,
        flush_s=args.flush_s or cfg.monitoring.flush_s,
        pair_timeout_s=args.pair_timeout_s,
    )
    uvicorn.run(
        build_app(store),
        host=args.host,
        port=args.port,
        log_level=args.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=30,
    )


if __name__ == "__main__":
    main()
