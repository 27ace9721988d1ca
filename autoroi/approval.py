"""A person's decision about a model version, bound to the artifact's digest.

``<lake>/approvals/roi/<version>.json`` records who decided what, when, about
which bytes (the sha256 digest the registry holds) and why. The registry
status follows (``approved`` or ``rejected``). The deploy pipeline refuses a
version without an approval record, or whose artifact no longer has the
digest that was approved.

Order of writes: the record first, then the status. A crash in between
leaves a record and a status still ``pending_approval``; deciding again with
the same decision completes it (idempotent), a different decision is refused.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass
from typing import Any

from autoroi.errors import AutoroiError
from autoroi.lake.storage import Lake
from autoroi.registry import (
    APPROVED,
    PENDING_APPROVAL,
    REJECTED,
    REJECTED_BY_GATE,
    get_version,
    set_status,
    verify_digest,
)
from autoroi.registry.store import check_version_name

log = logging.getLogger(__name__)

APPROVALS_ZONE = "approvals"
MODEL_NAME = "roi"
APPROVE, REJECT = "approve", "reject"
PAST = {APPROVE: "approved", REJECT: "rejected"}


class ApprovalError(AutoroiError):
    """A decision that cannot be recorded, or a deployment without a valid approval."""


@dataclass(frozen=True)
class Approval:
    version: str
    decision: str  # approve | reject
    by: str
    at: str
    digest: str
    comment: str
    override: bool
    gate_passed: bool | None
    master_version: str | None

    @property
    def approved(self) -> bool:
        return self.decision == APPROVE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def approval_path(lake: Lake, version: str) -> str:
    return lake.path(APPROVALS_ZONE, MODEL_NAME, f"{check_version_name(version)}.json")


def read_approval(lake: Lake, version: str) -> Approval | None:
    doc = lake.read_json(approval_path(lake, version))
    if doc is None:
        return None
    try:
        return Approval(**{k: doc[k] for k in Approval.__dataclass_fields__})
    except (KeyError, TypeError) as e:
        raise ApprovalError(f"approval record of {version} is malformed: {e}") from e


def decide(
    lake: Lake,
    version: str,
    decision: str,
    by: str,
    comment: str = "",
    *,
    override: bool = False,
    now: dt.datetime | None = None,
) -> Approval:
    """Record ``approve`` or ``reject`` for ``version`` (see the module docstring)."""
    if decision not in (APPROVE, REJECT):
        raise ApprovalError(f"decision must be {APPROVE!r} or {REJECT!r}, not {decision!r}")
    by, comment = (by or "").strip(), (comment or "").strip()
    if not by:
        raise ApprovalError("a decision needs who made it (--by NAME)")
    mv = get_version(lake, version)
    if decision == REJECT and not comment:
        raise ApprovalError("rejecting needs a reason (--comment TEXT)")
    if decision == APPROVE and mv.status == REJECTED_BY_GATE and not (override and comment):
        raise ApprovalError(
            f"{version} failed its validation gates ({'; '.join(mv.gate.get('reasons') or [])});"
            " approving it anyway needs --override and a --comment saying why"
        )
    existing = read_approval(lake, version)
    target = APPROVED if decision == APPROVE else REJECTED
    if existing is not None:
        if existing.decision != decision:
            raise ApprovalError(
                f"{version} was already {PAST[existing.decision]} by {existing.by} at {existing.at};"
                " not changing it"
            )
        if mv.status in (PENDING_APPROVAL, REJECTED_BY_GATE):  # a crash after the record: finish it
            set_status(lake, version, target, existing.by, existing.comment, override=existing.override)
        return existing
    if mv.status not in (PENDING_APPROVAL, REJECTED_BY_GATE):
        raise ApprovalError(f"{version} is {mv.status}; only a version waiting for review can be decided")
    check = verify_digest(lake, version)
    if not check.ok:
        raise ApprovalError(
            f"{version}: the artifact's digest {check.actual} differs from the registered {check.expected};"
            " it changed after registration and cannot be approved"
        )
    now = now or dt.datetime.now(dt.UTC)
    record = Approval(
        version=version,
        decision=decision,
        by=by,
        at=now.isoformat(timespec="seconds"),
        digest=mv.digest,
        comment=comment,
        override=bool(override and mv.status == REJECTED_BY_GATE),
        gate_passed=mv.gate_passed,
        master_version=mv.master_version,
    )
    path = approval_path(lake, version)
    lake.sweep(path.rsplit("/", 1)[0])  # temporaries of decisions whose process died
    lake.write_json(path, record.to_dict())
    set_status(lake, version, target, by, comment or PAST[decision], override=record.override)
    log.info("%s %s by %s (digest %s)", version, PAST[decision], by, mv.digest[:12])
    return record


def require_approval(lake: Lake, version: str) -> Approval:
    """The approval a deployment rests on; refuses a missing or negative one,
    and an artifact whose bytes are not the approved ones."""
    record = read_approval(lake, version)
    if record is None:
        raise ApprovalError(f"{version} has no recorded approval: run `autoroi approve {version} --by NAME`")
    if not record.approved:
        raise ApprovalError(f"{version} was rejected by {record.by} at {record.at}: {record.comment}")
    mv = get_version(lake, version)
    if mv.digest != record.digest:
        raise ApprovalError(
            f"{version}: the registry's digest {mv.digest} is not the approved {record.digest};"
            " refusing to deploy"
        )
    check = verify_digest(lake, version)
    if not check.ok:
        raise ApprovalError(
            f"{version}: the artifact's bytes (digest {check.actual}) are not the approved ones"
            f" ({record.digest}); refusing to deploy"
        )
    return record
