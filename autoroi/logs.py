"""Logging set-up for entry points (CLI, components). Library modules only
create loggers."""

from __future__ import annotations

import logging


def setup_logging(level: str | int = "INFO") -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("botocore", "urllib3", "s3transfer", "py4j", "absl", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
