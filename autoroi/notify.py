"""Tell a reviewer that a model version waits for a decision (the ``notify``
step of the ``train`` pipeline).

Channels (``NotifyConfig.channels``; every configured channel is tried, and a
failure of one does not keep the others from being tried):

- ``log`` (the default): the notice as log lines of the step, which the
  Kubeflow UI shows;
- ``webhook``: a Slack-compatible JSON POST (``{"text": ..., "blocks": [...]}``,
  Slack's incoming webhooks; Mattermost and Rocket.Chat accept the same) with
  ``urllib``; the URL is a secret (it carries the token), so the config names
  the environment variable that holds it and error messages show only its
  scheme and host;
- ``sns``: ``Publish`` to an AWS SNS topic through boto3 (credentials from the
  standard AWS chain; ``sns_endpoint_url`` for LocalStack or moto), from where
  e-mail, SQS or chat subscriptions fan out.

The notice carries the version, the gate decision and its reasons, the key
metrics, where the report is, and the exact command to approve (for a version
the gates rejected: the override form) and to reject.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shlex
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from autoroi.config import AutoroiConfig, NotifyConfig
from autoroi.errors import NotifyError

if TYPE_CHECKING:
    from autoroi.registry.store import ModelVersion

log = logging.getLogger(__name__)

REJECTED_BY_GATE = "rejected_by_gate"
KEY_METRICS = (
    ("wape", "units WAPE"),
    ("mae", "units MAE"),
    ("roi_mae", "ROI MAE"),
    ("roi_spearman", "ROI Spearman"),
    ("roi_bias", "ROI mean bias"),
    ("roi_balanced_accuracy", "pays back: balanced accuracy"),
    ("roi_auc", "pays back: AUC"),
)
_BODY_SNIPPET = 200


@dataclass(frozen=True)
class ReviewNotice:
    """What a reviewer needs to decide about one model version."""

    version: str
    status: str  # pending_approval or rejected_by_gate
    gate_passed: bool
    report: str  # where the report is: a path, an s3:// URI or a URL
    reasons: Sequence[str] = ()
    metrics: Mapping[str, float | None] = field(default_factory=dict)
    master_version: str | None = None
    lake_uri: str | None = None  # added to the commands as --lake when given
    trained_because: str | None = None  # what started the training run

    @classmethod
    def from_version(cls, mv: ModelVersion, lake_uri: str | None = None) -> ReviewNotice:
        """The notice of a registered version (``autoroi.registry``)."""
        gate = mv.gate
        return cls(
            version=mv.version,
            status=mv.status,
            gate_passed=bool(gate.get("passed")),
            report=mv.report_location,
            reasons=[str(r) for r in gate.get("reasons") or []],
            metrics={k: _num(v) for k, v in mv.metrics.items()},
            master_version=mv.master_version,
            lake_uri=lake_uri,
            trained_because=mv.metadata.get("trained_because") or None,
        )

    @property
    def override_needed(self) -> bool:
        return self.status == REJECTED_BY_GATE or not self.gate_passed

    def _lake(self) -> str:
        return f" --lake {shlex.quote(self.lake_uri)}" if self.lake_uri else ""

    @property
    def approve_command(self) -> str:
        cmd = f"autoroi approve {shlex.quote(self.version)} --by <name>{self._lake()}"
        if self.override_needed:
            cmd += ' --override --comment "<why the gate failure is acceptable>"'
        return cmd

    @property
    def reject_command(self) -> str:
        return f'autoroi reject {shlex.quote(self.version)} --by <name> --comment "<reason>"{self._lake()}'

    @property
    def headline(self) -> str:
        if self.override_needed:
            return f"autoroi: model version {self.version} failed its validation gates ({self.status})"
        return f"autoroi: model version {self.version} is waiting for approval"

    def metric_line(self) -> str:
        parts = [
            f"{label} {_fmt(self.metrics.get(key))}" for key, label in KEY_METRICS if key in self.metrics
        ]
        return " · ".join(parts) if parts else "no metrics recorded"

    def text(self) -> str:
        """The plain-text notice (log lines, SNS message, webhook fallback text)."""
        lines = [self.headline]
        if self.trained_because:
            lines.append(f"trained because: {self.trained_because}")
        if self.master_version:
            lines.append(f"master table: {self.master_version}")
        lines.append(f"gates: {'passed' if self.gate_passed else 'FAILED'}")
        lines += [f"  - {r}" for r in self.reasons]
        lines.append(f"metrics (backtest): {self.metric_line()}")
        lines.append(f"report: {self.report}")
        approve = "approve anyway (override)" if self.override_needed else "approve"
        lines.append(f"{approve}: {self.approve_command}")
        lines.append(f"reject: {self.reject_command}")
        return "\n".join(lines)

    def markdown(self) -> str:
        """The notice as Markdown (the ``notify`` step's artifact in the Kubeflow UI)."""
        lines = [f"### {self.headline}", ""]
        if self.trained_because:
            lines.append(f"- trained because: {self.trained_because}")
        if self.master_version:
            lines.append(f"- master table: `{self.master_version}`")
        lines.append(f"- gates: **{'passed' if self.gate_passed else 'FAILED'}**")
        lines += [f"  - {r}" for r in self.reasons]
        lines.append(f"- metrics (backtest): {self.metric_line()}")
        lines.append(f"- report: `{self.report}`")
        approve = "approve anyway (override)" if self.override_needed else "approve"
        lines += ["", f"{approve}:", "", "```", self.approve_command, "```", "", "reject:", "", "```"]
        lines += [self.reject_command, "```", ""]
        return "\n".join(lines)

    def slack_payload(self) -> dict[str, Any]:
        """Slack incoming-webhook JSON: ``text`` (fallback, notifications) and
        ``blocks``. Slack reads ``&``, ``<`` and ``>`` as markup, so they are
        escaped as Slack asks (``&amp;``, ``&lt;``, ``&gt;``)."""
        reasons = "\n".join(f"• {_slack(r)}" for r in self.reasons)
        fields = [
            {"type": "mrkdwn", "text": f"*Version*\n`{_slack(self.version)}`"},
            {"type": "mrkdwn", "text": f"*Gates*\n{'passed' if self.gate_passed else 'FAILED'}"},
            {"type": "mrkdwn", "text": f"*Master table*\n`{_slack(self.master_version or '-')}`"},
            {"type": "mrkdwn", "text": f"*Status*\n{_slack(self.status)}"},
        ]
        if self.trained_because:
            fields.append({"type": "mrkdwn", "text": f"*Trained because*\n{_slack(self.trained_because)}"})
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": self.headline[:150]}},
            {"type": "section", "fields": fields},
        ]
        if reasons:
            blocks.append(
                {"type": "section", "text": {"type": "mrkdwn", "text": f"*Gate failures*\n{reasons}"}}
            )
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"*Metrics (backtest)*\n{_slack(self.metric_line())}"},
            }
        )
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*Report*\n`{_slack(self.report)}`"}}
        )
        approve = "Approve anyway (override)" if self.override_needed else "Approve"
        blocks.append(
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"*{approve}*\n```{_slack(self.approve_command)}```\n"
                    f"*Reject*\n```{_slack(self.reject_command)}```",
                },
            }
        )
        return {"text": _slack(self.text()), "blocks": blocks}


@dataclass(frozen=True)
class MonitorAlert:
    """The monitor found the deployed model degraded or its inputs drifted:
    sent through the same channels as a review notice."""

    version: str  # the deployed model version that was judged
    status: str  # degraded or drift
    master_version: str
    reasons: Sequence[str] = ()
    record: str = ""  # where the monitoring record is

    @property
    def headline(self) -> str:
        return f"autoroi: the deployed model {self.version} is {self.status} on master {self.master_version}"

    def _lines(self) -> list[str]:
        return [f"- {r}" for r in self.reasons] + [
            f"record: {self.record}",
            "history: autoroi monitor show",
        ]

    def text(self) -> str:
        return "\n".join([self.headline, *self._lines()])

    def markdown(self) -> str:
        return "\n".join([f"### {self.headline}", "", *self._lines(), ""])

    def slack_payload(self) -> dict[str, Any]:
        body = "\n".join(_slack(line) for line in self._lines())
        return {
            "text": _slack(self.text()),
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": self.headline[:150]}},
                {"type": "section", "text": {"type": "mrkdwn", "text": body}},
            ],
        }


def _num(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _fmt(v: Any) -> str:
    x = _num(v)
    return "n/a" if x is None else f"{x:.4g}"


def _slack(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# --------------------------------------------------------------------------- channels


def _log(notice: ReviewNotice | MonitorAlert, cfg: NotifyConfig) -> None:
    for line in notice.text().splitlines():
        log.info("%s", line)


def _where(url: str) -> str:
    """Scheme and host only: the path of a webhook URL is its secret."""
    p = urlparse(url)
    return f"{p.scheme}://{p.hostname or '?'}" + (f":{p.port}" if p.port else "")


def _webhook(notice: ReviewNotice | MonitorAlert, cfg: NotifyConfig) -> None:
    url = os.environ.get(cfg.webhook_url_env, "").strip()
    if not url:
        raise NotifyError(
            f"webhook: the environment variable {cfg.webhook_url_env} (notify.webhook_url_env) that holds"
            " the webhook URL is not set"
        )
    if urlparse(url).scheme not in ("http", "https") or not urlparse(url).hostname:
        raise NotifyError(f"webhook: {cfg.webhook_url_env} does not hold an http(s) URL")
    where = _where(url)
    body = json.dumps(notice.slack_payload()).encode("utf-8")
    req = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json; charset=utf-8", "User-Agent": "autoroi-notify"},
    )
    try:
        with urllib.request.urlopen(req, timeout=cfg.timeout_s) as resp:  # scheme checked above
            status = int(resp.status)
            answer = resp.read(_BODY_SNIPPET).decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        detail = " ".join(e.read(_BODY_SNIPPET).decode("utf-8", "replace").split())
        raise NotifyError(
            f"webhook {where} answered HTTP {e.code} {e.reason}" + (f": {detail}" if detail else "")
        ) from None
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise NotifyError(
            f"webhook {where} could not be reached within {cfg.timeout_s:g} s: {reason}"
        ) from None
    if not 200 <= status < 300:
        raise NotifyError(f"webhook {where} answered HTTP {status}: {' '.join(answer.split())}")
    log.info("notified the reviewer through the webhook at %s (HTTP %d)", where, status)


def _sns(notice: ReviewNotice | MonitorAlert, cfg: NotifyConfig) -> None:
    arn = cfg.sns_topic_arn
    if not arn:
        raise NotifyError("sns: notify.sns_topic_arn is not set")
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    parts = arn.split(":")
    region = parts[3] if len(parts) > 5 and parts[3] else None
    client = boto3.client(
        "sns",
        region_name=region,
        endpoint_url=cfg.sns_endpoint_url,
        config=Config(connect_timeout=cfg.timeout_s, read_timeout=cfg.timeout_s, retries={"max_attempts": 2}),
    )
    subject = notice.headline.encode("ascii", "replace").decode()[:100]
    try:
        answer = client.publish(
            TopicArn=arn,
            Subject=subject,
            Message=notice.text(),
            MessageAttributes={
                "version": {"DataType": "String", "StringValue": notice.version},
                "status": {"DataType": "String", "StringValue": notice.status},
            },
        )
    except ClientError as e:
        err = e.response.get("Error", {})
        raise NotifyError(
            f"sns: publishing to {arn} failed: {err.get('Code')}: {err.get('Message')}"
        ) from None
    except BotoCoreError as e:
        raise NotifyError(f"sns: publishing to {arn} failed: {e}") from None
    log.info("notified the reviewer through SNS topic %s (message %s)", arn, answer.get("MessageId"))


_CHANNELS = {"log": _log, "webhook": _webhook, "sns": _sns}


def notify_reviewer(
    message: ReviewNotice | MonitorAlert, cfg: NotifyConfig | AutoroiConfig | None = None
) -> list[str]:
    """Send ``message`` through every configured channel; returns the channels
    that delivered it. If any failed, raises :class:`NotifyError` naming each
    failure (after trying all of them)."""
    if isinstance(cfg, AutoroiConfig):
        cfg = cfg.notify
    cfg = cfg or NotifyConfig()
    delivered: list[str] = []
    failures: list[str] = []
    for channel in dict.fromkeys(cfg.channels):
        try:
            _CHANNELS[channel](message, cfg)
            delivered.append(channel)
        except NotifyError as e:
            log.error("notification through %s failed: %s", channel, e)
            failures.append(str(e))
    if failures:
        done = f" (delivered through {', '.join(delivered)})" if delivered else ""
        raise NotifyError(f"reviewer notification for {message.version} failed: {'; '.join(failures)}{done}")
    return delivered
