"""Connections to the source database.

The password may come inside the URL (convenient on a laptop), from the
environment variable or mounted file named in the config (the cluster way).
Whatever its origin, it never appears in a log line or an error message:
``redact`` is applied to every URL that leaves this module.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from autoroi.config import SourceConfig, read_secret
from autoroi.errors import ConfigError, SourceError

_CREDENTIALS = re.compile(
    r"^(?P<scheme>[A-Za-z][\w+.-]*://)(?P<user>[^:/@]*):(?P<pw>.*)@(?P<rest>[^@]*)$", re.S
)
SUPPORTED = {"sqlite", "postgresql", "mysql", "mariadb"}


def parse_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as e:
        raise ConfigError(
            f"malformed source URL {redact(url)!r}: expected dialect://user@host:port/db"
        ) from e
    if parsed.host and "@" in parsed.host:
        raise ConfigError(
            f"malformed source URL {redact(url)!r}: an '@' in the user or password must be written as %40"
        )
    if parsed.get_backend_name() not in SUPPORTED:
        raise ConfigError(
            f"unsupported source database {parsed.get_backend_name()!r} in {redact(url)!r};"
            f" supported: {', '.join(sorted(SUPPORTED))}"
        )
    return parsed


def redact(url: str | URL) -> str:
    """The URL with its password masked; safe for logs and errors."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    # by hand, not by a URL parser: everything up to the *last* '@' may be
    # password, even when the URL is malformed
    m = _CREDENTIALS.match(url)
    return f"{m['scheme']}{m['user']}:***@{m['rest']}" if m else url


def resolve_url(cfg: SourceConfig, url: str | None = None) -> URL:
    """The URL to connect with: the password from the URL, else from the secret
    named in the config."""
    parsed = parse_url(url or cfg.url)
    if parsed.password is None and parsed.get_backend_name() != "sqlite":
        secret = read_secret(cfg.password_env, cfg.password_file)
        if secret is not None:
            parsed = parsed.set(password=secret)
    return parsed


def without_password(url: str) -> str:
    """The URL to pass on as a parameter; the password travels separately."""
    parsed = parse_url(url)
    if parsed.password is None:
        return url
    return parsed._replace(password=None).render_as_string(hide_password=False)


def connect_engine(url: URL, timeout_s: int = 10) -> Engine:
    """An engine that has been proven to connect, or a ``SourceError`` that says
    why not (never with the password)."""
    backend = url.get_backend_name()
    connect_args: dict[str, object] = {}
    if backend == "postgresql":
        if url.get_driver_name() in ("psycopg2", ""):
            url = url.set(drivername="postgresql+psycopg")
        connect_args["connect_timeout"] = timeout_s
    elif backend in ("mysql", "mariadb"):
        connect_args["connect_timeout"] = timeout_s
    elif backend == "sqlite":
        connect_args["timeout"] = timeout_s
    try:
        engine = create_engine(url, connect_args=connect_args, pool_pre_ping=True)
    except NoSuchModuleError as e:
        raise SourceError(f"no driver installed for {backend} ({redact(url)}): {e}") from e
    except ImportError as e:
        raise SourceError(
            f"the driver for {backend} is not installed ({e.name}); for MySQL/MariaDB install"
            " the 'mysql' extra"
        ) from e
    if backend == "sqlite":

        @event.listens_for(engine, "connect")
        def _fk_on(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.execute("PRAGMA foreign_keys=ON")

    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as e:
        raise SourceError(f"cannot connect to source {redact(url)}: {describe_db_error(e)}") from e
    return engine


def describe_db_error(e: BaseException) -> str:
    """One line about a driver error, with anything that looks like a
    credential removed."""
    orig = getattr(e, "orig", None) or e
    text = " ".join(str(orig).split())
    low = text.lower()
    if "password authentication failed" in low or "access denied" in low:
        return "authentication failed (wrong user or password)"
    if "no password supplied" in low:
        return (
            "the server wants a password and none was given (set the variable named by source.password_env)"
        )
    if "connection refused" in low or "could not connect" in low or "can't connect" in low:
        return "connection refused (is the server running, host and port right?)"
    if "timeout" in low or "timed out" in low:
        return "connection timed out"
    if "does not exist" in low and "database" in low:
        return text.split("DETAIL")[0].strip()
    if "unable to open database file" in low:
        return "unable to open the SQLite database file (missing folder or no permission)"
    return text[:300]
