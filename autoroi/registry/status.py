"""Statuses of a model version and the transitions between them.

::

    register ──> pending_approval ──approve──> approved ──deploy──> deployed ──> retired
        │              │                         │   │                             │
        │              └──reject──> rejected <───┘   └──retire──> retired          │
        └──> rejected_by_gate ──reject──> rejected                                 │
                      └──approve (override only)──> approved        deployed <─────┘ (roll back)

``rejected`` is final: a rejected version is never approved or deployed again
(train a new one). A version the gates rejected can be approved only with an
explicit override (and a reason), which the status history records. A retired
version may be deployed again: that is a roll-back to a model a human approved
and production ran before.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

Status = Literal["pending_approval", "rejected_by_gate", "approved", "rejected", "deployed", "retired"]

PENDING_APPROVAL: Final = "pending_approval"
REJECTED_BY_GATE: Final = "rejected_by_gate"
APPROVED: Final = "approved"
REJECTED: Final = "rejected"
DEPLOYED: Final = "deployed"
RETIRED: Final = "retired"

STATUSES: tuple[str, ...] = get_args(Status)

# statuses a version may be registered with (the train pipeline's two outcomes)
INITIAL: frozenset[str] = frozenset({PENDING_APPROVAL, REJECTED_BY_GATE})

# current -> statuses it may move to
TRANSITIONS: dict[str, frozenset[str]] = {
    PENDING_APPROVAL: frozenset({APPROVED, REJECTED}),
    REJECTED_BY_GATE: frozenset({APPROVED, REJECTED}),  # approved: with override only
    APPROVED: frozenset({DEPLOYED, REJECTED, RETIRED}),
    REJECTED: frozenset(),
    DEPLOYED: frozenset({RETIRED}),
    RETIRED: frozenset({DEPLOYED}),
}

# transitions that need ``override=True``
OVERRIDE_REQUIRED: frozenset[tuple[str, str]] = frozenset({(REJECTED_BY_GATE, APPROVED)})

# transitions that need a reason (the reviewer says why)
REASON_REQUIRED: frozenset[str] = frozenset({REJECTED})


def check_transition(current: str, requested: str, *, override: bool) -> str | None:
    """``None`` when ``current -> requested`` is allowed, else why not (words for the error)."""
    if requested not in STATUSES:
        return f"unknown status {requested!r}; known: {', '.join(STATUSES)}"
    if current not in TRANSITIONS:
        return f"the version has an unknown status {current!r}"
    allowed = TRANSITIONS[current]
    if requested not in allowed:
        if not allowed:
            return f"{current} is final"
        return f"from {current} only {', '.join(sorted(allowed))} may follow"
    if (current, requested) in OVERRIDE_REQUIRED and not override:
        return "the version failed its validation gates; approving it needs an explicit override"
    return None
