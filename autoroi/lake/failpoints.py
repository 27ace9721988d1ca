"""Named crash points for fault-injection tests.

``AUTOROI_FAILPOINT=<point>[:<table>][@<n>]`` makes the process exit abruptly
(``os._exit``, no clean-up, like a killed pod) the n-th time it reaches that
point. Read when a point is hit, never at import; unset, it costs one dict
look-up.

Points in replication: ``extract.batch`` (per table, after each batch a full
load writes), ``publish.before_swap`` (per table: the staged version is
complete, manifest included; nothing points to it), ``publish.after_link``
(local lakes: the temporary swap link exists, the table link is not yet
replaced), ``publish.after_swap`` (the new version is the table),
``replicate.before_slot_advance`` (after every table is published and the slot
positions are recorded, before the PostgreSQL replication slot is advanced).

Elsewhere: ``json.before_replace`` (per file name: a JSON document's
temporary is written, not yet renamed over the target; every atomic JSON
write of a local lake and of the local deploy state), ``master.before_manifest``
(the master version's staging folder or S3 prefix holds its data, no
manifest), ``master.before_latest``, ``registry.before_commit`` (a model
version's files are staged, no ``metadata.json``), ``registry.before_rename``,
``registry.before_status_write``.
"""

from __future__ import annotations

import os
from collections import Counter

_hits: Counter[str] = Counter()
EXIT_CODE = 86


def hit(point: str, table: str = "") -> None:
    spec = os.environ.get("AUTOROI_FAILPOINT")
    if not spec:
        return
    target, _, nth = spec.partition("@")
    name, _, want_table = target.partition(":")
    if name != point or (want_table and want_table != table):
        return
    _hits[spec] += 1
    if _hits[spec] >= int(nth or 1):
        os._exit(EXIT_CODE)
