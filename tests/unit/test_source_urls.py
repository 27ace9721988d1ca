import pytest

from autoroi.config import SourceConfig
from autoroi.errors import ConfigError
from autoroi.source.db import describe_db_error, parse_url, redact, resolve_url, without_password


def test_redact_hides_password_even_when_malformed():
    assert "s3cret" not in redact("postgresql://bob:s3cret@db:5432/dms")
    assert "s3cret" not in redact("postgresql://bob:s3cret@db:notaport/dms")
    assert redact("sqlite:///x.db") == "sqlite:///x.db"


@pytest.mark.parametrize("url", ["not a url", "://nothing", "oracle://u@h/db"])
def test_bad_urls_are_config_errors(url: str):
    with pytest.raises(ConfigError) as e:
        parse_url(url)
    assert "source" in str(e.value)


def test_password_comes_from_env_when_not_in_url(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AUTOROI_SOURCE_PASSWORD", "pw-env")
    url = resolve_url(SourceConfig(url="postgresql://bob@db/dms"))
    assert url.password == "pw-env"
    url = resolve_url(SourceConfig(url="postgresql://bob:inurl@db/dms"))
    assert url.password == "inurl"
    assert without_password("postgresql://bob:inurl@db/dms") == "postgresql://bob@db/dms"


def test_driver_errors_are_described_without_secrets():
    class Orig(Exception):
        pass

    e = Exception("wrapped")
    e.orig = Orig('connection failed: FATAL:  password authentication failed for user "bob"')  # type: ignore[attr-defined]
    assert describe_db_error(e) == "authentication failed (wrong user or password)"
    assert "refused" in describe_db_error(Exception("could not connect to server: Connection refused"))


def test_an_unencoded_at_in_the_password_is_refused_without_leaking():
    url = "postgresql://bob:p@ss@db.example/dms"
    assert "ss" not in redact(url).replace("postgresql", "")
    with pytest.raises(ConfigError, match="%40") as e:
        parse_url(url)
    assert "p@ss" not in str(e.value) and ":ss" not in str(e.value)
    assert parse_url("postgresql://bob:p%40ss@db.example/dms").password == "p@ss"
