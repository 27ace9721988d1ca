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


def scale_option(f: F) -> F:
    """The simulator's world size (``autoroi.source.simulator.SCALES``)."""
    return click.option(
        "--scale", type=click.Choice(["small", "medium", "large"]), default="small", show_default=True
    )(f)


def sales_rows_option(f: F) -> F:
    return click.option(
        "--sales-rows", type=click.IntRange(min=1), default=None, help="Exactly this many sales."
    )(f)


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


FRAME_SUFFIXES = (".csv", ".parquet")


def check_frame_path(path: Path, flag: str) -> None:
    """A table file is CSV or Parquet by its suffix; anything else is refused by flag name."""
    from autoroi.errors import AutoroiError

    if path.suffix.lower() not in FRAME_SUFFIXES:
        raise AutoroiError(f"{flag} {path}: .csv or .parquet")


def read_frame(path: Path, flag: str) -> Any:
    """A CSV or Parquet table as a DataFrame."""
    import pandas as pd

    from autoroi.errors import AutoroiError

    check_frame_path(path, flag)
    if not path.is_file():
        raise AutoroiError(f"{flag} {path}: no such file")
    try:
        return pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    except Exception as e:
        raise AutoroiError(f"{flag} {path}: not readable as {path.suffix[1:]} ({e})") from e


def write_frame(path: Path, frame: Any) -> None:
    """A DataFrame as CSV or Parquet by suffix, renamed into place so a killed
    run leaves the previous file (or none), never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if path.suffix.lower() == ".csv":
        frame.to_csv(tmp, index=False)
    else:
        frame.to_parquet(tmp, index=False)
    tmp.replace(path)
