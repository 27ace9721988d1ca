"""Named crash points for fault-injection tests.

``AUTOROI_FAILPOINT=<point>[:<table>][@<n>]`` makes the process exit abruptly
(``os._exit``, no clean-up, like a killed pod) the n-th time it reaches that
point. Read when a point is hit, never at import; unset, it costs one dict
look-up.

Points in replication: ``extract.batch`` (per table, after each batch a full
load writes), ``publish.before_swap`` and ``publish.after_swap`` (per table,
around the commit of a version), ``replicate.before_slot_advance`` (after
every table is published and the slot positions are recorded, before the
PostgreSQL replication slot is advanced).
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
