"""Options shared by commands, and the one place the config is loaded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from autoroi.config import AutoroiConfig, load_config

F = TypeVar("F", bound=Callable[..., Any])


def config_option(f: F) -> F:
    return click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path),
        default=None,
        help="YAML config file (AUTOROI_* variables override it).",
    )(f)


def source_option(f: F) -> F:
    return click.option("--source-url", default=None, help="SQLAlchemy URL of the source database.")(f)


def lake_option(f: F) -> F:
    return click.option(
        "--lake", "lake_uri", default=None, help="Lake root: a folder or s3://bucket/prefix."
    )(f)


def load(
    config_path: Path | None, source_url: str | None = None, lake_uri: str | None = None, **extra: Any
) -> AutoroiConfig:
    overrides: dict[str, Any] = {}
    if source_url:
        overrides.setdefault("source", {})["url"] = source_url
    if lake_uri:
        overrides.setdefault("lake", {})["uri"] = lake_uri
    for section, values in extra.items():
        overrides.setdefault(section, {}).update(values)
    return load_config(config_path, overrides)
