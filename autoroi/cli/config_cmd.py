"""``autoroi config show``."""

from __future__ import annotations

from pathlib import Path

import click
import yaml
from sqlalchemy.engine import make_url

from autoroi.cli.common import config_option, lake_option, load, source_option
from autoroi.config import AutoroiConfig, read_secret
from autoroi.source.db import redact


def masked(cfg: AutoroiConfig) -> dict[str, object]:
    """The effective config as a document, secrets masked: a password inside
    the URL shows as ***, a secret by reference shows whether it is set."""
    doc = cfg.model_dump(mode="json")
    doc["source"]["url"] = redact(cfg.source.url)
    try:
        secret_set = read_secret(cfg.source.password_env, cfg.source.password_file) is not None
    except Exception:  # noqa: BLE001 - an unreadable file is "not set" here
        secret_set = False
    in_url = make_url(cfg.source.url).password is not None
    doc["source"]["password"] = "*** (in URL)" if in_url else ("*** (set)" if secret_set else "(not set)")
    return doc


@click.group()
def config() -> None:
    """Inspect the configuration."""


@config.command("show")
@config_option
@source_option
@lake_option
def show(config_path: Path | None, source_url: str | None, lake_uri: str | None) -> None:
    """Print the effective configuration, secrets masked."""
    cfg = load(config_path, source_url, lake_uri)
    click.echo(yaml.safe_dump(masked(cfg), sort_keys=False), nl=False)
