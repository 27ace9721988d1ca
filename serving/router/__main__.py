"""``python -m serving.router``: the local endpoint (see ``app.py``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    import uvicorn

    from autoroi.logs import setup_logging
    from serving.router.app import build_app

    p = argparse.ArgumentParser(prog="python -m serving.router", description="autoroi's local endpoint")
    p.add_argument("--state-dir", required=True, help="where the deploy pipeline writes endpoint.json")
    p.add_argument("--static-dir", default=None, help="the dashboard's files, served at /")
    p.add_argument("--lake", default=None, help="the registry's lake (folder or s3://), for GET /report")
    p.add_argument("--config", default=None, help="autoroi config file (the lake's S3 settings)")
    p.add_argument(
        "--sink-url", default=None, help="the prediction sink: log every answered prediction there"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--log-level", default="WARNING")
    args = p.parse_args(argv)
    setup_logging(args.log_level)
    lake = None
    if args.lake:
        from autoroi.config import load_config
        from autoroi.lake.storage import open_lake

        lake = open_lake(args.lake, load_config(args.config).lake)
    app = build_app(args.state_dir, args.static_dir, lake=lake, sink_url=args.sink_url)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level.lower(), access_log=False)


if __name__ == "__main__":
    main()
