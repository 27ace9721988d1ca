"""The rollout's control flow, independent of where the model runs.

A target (the cluster's InferenceService, or local model server processes)
exposes the few operations a canary rollout needs; :func:`roll_out` calls them
in order: start the new version beside the old one, wait until it is ready,
smoke-test it, then promote it or roll it back. The old version answers until
the new one has passed; a failure at any point rolls back, so the endpoint
never serves a version that did not pass its smoke test.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from autoroi.errors import AutoroiError

log = logging.getLogger(__name__)


class DeployError(AutoroiError):
    """A rollout failed (and was rolled back where it got that far)."""


class RolloutTarget(Protocol):
    """Where versions run. ``serving()`` names the version that answers the
    endpoint now (``None`` before the first deployment)."""

    def serving(self) -> str | None: ...

    def start(self, version: str, artifact_uri: str) -> None:
        """Run ``version`` beside the serving one (canary traffic on a cluster)."""

    def wait_ready(self, version: str, timeout_s: float) -> None:
        """Return once ``version`` answers; raise :class:`DeployError` on timeout."""

    def candidate_url(self, version: str) -> str:
        """Base URL that reaches ``version`` itself, for the smoke test."""

    def promote(self, version: str) -> None:
        """Send all traffic to ``version``; the previous one stops."""

    def rollback(self, version: str) -> None:
        """Remove ``version``; the previous one keeps all traffic."""


@dataclass
class SmokeResult:
    passed: bool
    requests: int
    max_abs_error: float
    failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["max_abs_error"] == float("inf"):  # nothing compared; JSON has no Infinity
            d["max_abs_error"] = None
        return d


@dataclass
class RolloutResult:
    version: str
    previous: str | None
    outcome: str  # "promoted" or "rolled_back"
    smoke: SmokeResult | None
    seconds: float
    reason: str = ""

    @property
    def promoted(self) -> bool:
        return self.outcome == "promoted"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["smoke"] = self.smoke.to_dict() if self.smoke else None
        return d


def roll_out(
    target: RolloutTarget,
    version: str,
    artifact_uri: str,
    smoke_test: Callable[[str], SmokeResult],
    *,
    ready_timeout_s: float = 300.0,
) -> RolloutResult:
    """Start, wait, smoke-test, then promote or roll back. Returns the result
    for a rolled-back smoke failure too (the caller records it); raises only
    when even the rollback failed."""
    t0 = time.monotonic()
    previous = target.serving()
    if previous == version:
        log.info("version %s is serving already; nothing to roll out", version)
        return RolloutResult(version, previous, "promoted", None, 0.0, "already serving")
    log.info("rolling out %s (serving now: %s)", version, previous or "nothing")
    smoke: SmokeResult | None = None
    try:
        target.start(version, artifact_uri)
        target.wait_ready(version, ready_timeout_s)
        smoke = smoke_test(target.candidate_url(version))
    except Exception as e:  # noqa: BLE001 (any failure before promotion means: roll back)
        reason = f"{type(e).__name__}: {e}"
        log.error("rollout of %s failed before promotion (%s); rolling back", version, reason)
        _rollback(target, version)
        return RolloutResult(version, previous, "rolled_back", smoke, time.monotonic() - t0, reason)
    if not smoke.passed:
        reason = "smoke test failed: " + "; ".join(smoke.failures[:5])
        log.error("%s: %s; rolling back", version, reason)
        _rollback(target, version)
        return RolloutResult(version, previous, "rolled_back", smoke, time.monotonic() - t0, reason)
    target.promote(version)
    log.info("promoted %s (previous %s) after %.1f s", version, previous, time.monotonic() - t0)
    return RolloutResult(version, previous, "promoted", smoke, time.monotonic() - t0)


def _rollback(target: RolloutTarget, version: str) -> None:
    try:
        target.rollback(version)
    except Exception as e:
        raise DeployError(f"rolling back {version} failed too: {e}") from e
