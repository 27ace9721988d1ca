"""The model registry at ``<lake>/models/roi/<version>/`` (layout, version names
and atomicity in :mod:`autoroi.registry.store`; statuses and transitions in
:mod:`autoroi.registry.status`). Plain package: no TensorFlow, no kfp."""

from autoroi.registry.status import (
    APPROVED,
    DEPLOYED,
    PENDING_APPROVAL,
    REJECTED,
    REJECTED_BY_GATE,
    RETIRED,
    STATUSES,
    TRANSITIONS,
    Status,
)
from autoroi.registry.store import (
    DigestCheck,
    ModelVersion,
    fetch_artifact,
    get_version,
    list_versions,
    new_version,
    production_version,
    read_evaluation,
    register_model,
    registry_root,
    set_status,
    tree_digest,
    verify_digest,
    version_path,
)

__all__ = [
    "APPROVED",
    "DEPLOYED",
    "PENDING_APPROVAL",
    "REJECTED",
    "REJECTED_BY_GATE",
    "RETIRED",
    "STATUSES",
    "TRANSITIONS",
    "DigestCheck",
    "ModelVersion",
    "Status",
    "fetch_artifact",
    "get_version",
    "list_versions",
    "new_version",
    "production_version",
    "read_evaluation",
    "register_model",
    "registry_root",
    "set_status",
    "tree_digest",
    "verify_digest",
    "version_path",
]
