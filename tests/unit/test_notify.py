"""Reviewer notifications: log, a Slack-compatible webhook against a local HTTP
server, and AWS SNS against moto's server mode."""

from __future__ import annotations

import html
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from autoroi.config import AutoroiConfig, NotifyConfig, load_config
from autoroi.errors import ConfigError, NotifyError
from autoroi.notify import ReviewNotice, notify_reviewer

VERSION = "v20260302-093015-1a2b3c4d"
URL_ENV = "AUTOROI_TEST_WEBHOOK_URL"
SECRET_PATH = "/services/T000/B000/s3cr3t-t0ken"


def notice(passed: bool = True, **kw: Any) -> ReviewNotice:
    return ReviewNotice(
        version=VERSION,
        status="pending_approval" if passed else "rejected_by_gate",
        gate_passed=passed,
        report=f"s3://lake/models/roi/{VERSION}/report.html",
        reasons=[] if passed else ["beats_seasonal_naive: WAPE 0.41 >= seasonal_naive 0.39 & <worse>"],
        metrics={"wape": 0.3123, "mae": 2.5, "roi_mae": 0.42, "roi_spearman": float("nan")},
        master_version="0123456789abcdef",
        **kw,
    )


# --------------------------------------------------------------------------- the notice


def test_the_notice_carries_everything_a_reviewer_needs():
    n = notice(lake_uri="s3://autoroi-lake/prod")
    assert n.approve_command == f"autoroi approve {VERSION} --by <name> --lake s3://autoroi-lake/prod"
    text = n.text()
    for part in (
        VERSION,
        "0123456789abcdef",
        "gates: passed",
        "units WAPE 0.3123",
        "ROI Spearman n/a",
        n.report,
    ):
        assert part in text, part
    assert n.approve_command in text and n.reject_command in text


def test_a_gate_rejected_version_gets_the_override_command():
    n = notice(passed=False)
    assert n.approve_command == (
        f'autoroi approve {VERSION} --by <name> --override --comment "<why the gate failure is acceptable>"'
    )
    text = n.text()
    assert "failed its validation gates" in text and "gates: FAILED" in text
    assert "beats_seasonal_naive: WAPE 0.41" in text and "approve anyway (override)" in text


def test_notice_from_a_registered_version(tmp_path: Path):
    from autoroi.lake.storage import open_lake
    from autoroi.registry import register_model
    from tests.unit.test_registry import make_artifact, metadata

    lake = open_lake(str(tmp_path / "lake"))
    mv = register_model(
        lake, make_artifact(tmp_path / "a"), metadata(False), {}, "<html></html>", "rejected_by_gate"
    )
    n = ReviewNotice.from_version(mv, lake_uri=str(tmp_path / "lake"))
    assert (n.version, n.status, n.gate_passed) == (mv.version, "rejected_by_gate", False)
    assert n.report == str(tmp_path / "lake" / "models" / "roi" / mv.version / "report.html")
    assert n.reasons and n.metrics["wape"] == 0.31 and "--override" in n.approve_command


# --------------------------------------------------------------------------- log


def test_log_channel_writes_the_approve_command(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger="autoroi.notify")
    assert notify_reviewer(notice(), NotifyConfig()) == ["log"]
    assert f"approve: autoroi approve {VERSION} --by <name>" in caplog.text
    assert "report: s3://lake/models" in caplog.text


# --------------------------------------------------------------------------- webhook


class Hook:
    """A local HTTP server that records POSTs and answers with ``status``."""

    def __init__(self, status: int = 200, body: bytes = b"ok", delay: float = 0.0):
        self.requests: list[dict[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                hook.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": self.rfile.read(length)}
                )
                if delay:
                    time.sleep(delay)
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        port = self.server.server_address[1]
        return f"http://127.0.0.1:{port}{SECRET_PATH}"

    def __enter__(self) -> Hook:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    def use(hook: Hook) -> NotifyConfig:
        monkeypatch.setenv(URL_ENV, hook.url)
        return NotifyConfig(channels=["webhook"], webhook_url_env=URL_ENV, timeout_s=2)

    yield use


def test_webhook_posts_slack_compatible_json(hook_env: Any):
    with Hook() as hook:
        assert notify_reviewer(notice(passed=False), hook_env(hook)) == ["webhook"]
    assert len(hook.requests) == 1
    req = hook.requests[0]
    assert req["path"] == SECRET_PATH
    assert req["headers"]["Content-Type"].startswith("application/json")
    body = json.loads(req["body"])
    assert set(body) == {"text", "blocks"}
    assert body["blocks"][0]["type"] == "header" and VERSION in body["blocks"][0]["text"]["text"]
    assert all(b["type"] in ("header", "section") for b in body["blocks"])
    # Slack's escaping of & < >, and nothing else
    assert "&lt;name&gt;" in body["text"] and "&amp; &lt;worse&gt;" in body["text"]
    text = html.unescape(body["text"])
    assert notice(passed=False).approve_command in text
    commands = html.unescape(body["blocks"][-1]["text"]["text"])
    assert notice(passed=False).approve_command in commands and "--override" in commands
    assert "units WAPE 0.3123" in html.unescape(json.dumps(body["blocks"]))


def test_webhook_500_is_a_clear_error_without_the_secret(hook_env: Any):
    with Hook(status=500, body=b"invalid_payload") as hook:
        cfg = hook_env(hook)
        with pytest.raises(NotifyError) as err:
            notify_reviewer(notice(), cfg)
    msg = str(err.value)
    assert "HTTP 500" in msg and "invalid_payload" in msg and "webhook http://127.0.0.1:" in msg
    assert "s3cr3t" not in msg and SECRET_PATH not in msg


def test_webhook_timeout_and_unreachable(hook_env: Any, monkeypatch: pytest.MonkeyPatch):
    with Hook(delay=1.5) as hook:
        cfg = hook_env(hook).model_copy(update={"timeout_s": 0.3})
        with pytest.raises(NotifyError, match="could not be reached within 0.3 s"):
            notify_reviewer(notice(), cfg)
    monkeypatch.setenv(URL_ENV, hook.url)  # the server is gone now
    with pytest.raises(NotifyError, match="could not be reached") as err:
        notify_reviewer(notice(), NotifyConfig(channels=["webhook"], webhook_url_env=URL_ENV, timeout_s=1))
    assert "s3cr3t" not in str(err.value)


def test_webhook_needs_its_url_variable(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    monkeypatch.delenv(URL_ENV, raising=False)
    caplog.set_level(logging.INFO, logger="autoroi.notify")
    cfg = NotifyConfig(channels=["log", "webhook"], webhook_url_env=URL_ENV)
    with pytest.raises(NotifyError, match=f"{URL_ENV} .* is not set") as err:
        notify_reviewer(notice(), cfg)
    assert "delivered through log" in str(err.value)
    assert "autoroi approve" in caplog.text  # the other channel still went out
    monkeypatch.setenv(URL_ENV, "ftp://example.invalid/x")
    with pytest.raises(NotifyError, match="does not hold an http"):
        notify_reviewer(notice(), NotifyConfig(channels=["webhook"], webhook_url_env=URL_ENV))


# --------------------------------------------------------------------------- SNS (moto server mode)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def test_sns_publishes_to_the_topic(s3_server: str, aws_env: None):
    import boto3

    sns = boto3.client("sns", endpoint_url=s3_server, region_name="us-east-1")
    sqs = boto3.client("sqs", endpoint_url=s3_server, region_name="us-east-1")
    name = f"reviewers-{uuid.uuid4().hex[:8]}"
    topic = sns.create_topic(Name=name)["TopicArn"]
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)

    cfg = NotifyConfig(channels=["sns", "log"], sns_topic_arn=topic, sns_endpoint_url=s3_server, timeout_s=5)
    assert notify_reviewer(notice(passed=False), cfg) == ["sns", "log"]

    got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=2).get(
        "Messages", []
    )
    assert len(got) == 1
    envelope = json.loads(got[0]["Body"])
    assert envelope["TopicArn"] == topic
    assert (
        envelope["Subject"]
        == f"autoroi: model version {VERSION} failed its validation gates (rejected_by_gate)"
    )
    assert notice(passed=False).approve_command in envelope["Message"]
    assert envelope["MessageAttributes"]["version"]["Value"] == VERSION


def test_sns_errors_name_the_topic(s3_server: str, aws_env: None):
    missing = "arn:aws:sns:us-east-1:123456789012:no-such-topic"
    cfg = NotifyConfig(channels=["sns"], sns_topic_arn=missing, sns_endpoint_url=s3_server, timeout_s=5)
    with pytest.raises(
        NotifyError, match="sns: publishing to arn:aws:sns:us-east-1:123456789012:no-such-topic"
    ):
        notify_reviewer(notice(), cfg)
    with pytest.raises(NotifyError, match="sns_topic_arn is not set"):
        notify_reviewer(notice(), NotifyConfig(channels=["sns"]))


# --------------------------------------------------------------------------- config


def test_notify_config(monkeypatch: pytest.MonkeyPatch):
    assert AutoroiConfig().notify.channels == ["log"]
    monkeypatch.setenv("AUTOROI_NOTIFY__CHANNELS", "[log, webhook]")
    monkeypatch.setenv("AUTOROI_NOTIFY__TIMEOUT_S", "3")
    cfg = load_config()
    assert cfg.notify.channels == ["log", "webhook"] and cfg.notify.timeout_s == 3
    bad: dict[str, Any]
    for bad in ({"channels": ["email"]}, {"channels": []}, {"sns_topic_arn": "my-topic"}, {"timeout_s": 0}):
        with pytest.raises(ConfigError, match="notify"):
            load_config(overrides={"notify": bad})
