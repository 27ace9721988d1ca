"""Writer identities and the removal of what dead runs left: the rule itself,
approvals and status changes killed mid-write, and the local deploy state."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autoroi.approval import APPROVE, decide, read_approval
from autoroi.deploy.local import CANDIDATES, LocalTarget, pid_alive
from autoroi.lake import leftovers
from autoroi.lake.failpoints import EXIT_CODE
from autoroi.lake.storage import Lake, open_lake, write_json_local
from autoroi.registry import get_version
from tests.leftovers_support import REPO, dead_writer_id, live_writer, temporaries
from tests.unit.test_registry import register


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return open_lake(str(tmp_path / "lake"))


def test_writer_states() -> None:
    me = leftovers.writer_id()
    assert leftovers.writer_state(me) == "self"
    assert leftovers.writer_state(dead_writer_id()) == "dead"
    with live_writer() as alive:
        assert alive != me and leftovers.writer_state(alive) == "alive"
    assert leftovers.writer_state(alive) == "dead"
    # a reused PID is not the same process: another start time
    pid, start = os.getpid(), me.rsplit("s", 1)[1]
    assert leftovers.writer_state(me.replace(f"p{pid}s{start}", f"p{pid}s{int(start) + 1}")) == "dead"
    # another machine (or PID namespace): cannot be seen from here
    other = "w" + ("0" if me[1] != "0" else "1") * 8 + me[9:]
    assert leftovers.writer_state(other) == "unknown"
    assert leftovers.writer_state(None) == "unknown"


def test_age_decides_only_where_liveness_cannot_be_seen() -> None:
    now = time.time()
    me = leftovers.writer_id()
    other = "w" + ("0" if me[1] != "0" else "1") * 8 + "p1s1"
    dead = dead_writer_id()
    assert leftovers.abandoned(f".x.{dead}-abcdef.tmp", now, 3600, now)  # dead: at once
    assert not leftovers.abandoned(f".x.{me}-abcdef.tmp", 0.0, 3600, now)  # ours: never
    assert not leftovers.abandoned(f".x.{other}-abcdef.tmp", now - 3000, 3600, now)
    assert leftovers.abandoned(f".x.{other}-abcdef.tmp", now - 4000, 3600, now)
    assert leftovers.abandoned("x.json." + "a" * 32 + ".tmp", now - 4000, 3600, now)  # an older release's
    assert not leftovers.abandoned("x.json." + "a" * 32 + ".tmp", now - 10, 3600, now)


def test_temporary_names_are_hidden_and_recognized() -> None:
    name = leftovers.temp_name("metadata.json")
    assert name.startswith(".metadata.json.") and name.endswith(".tmp")
    assert leftovers.is_temporary(name) and leftovers.owner(name) == leftovers.writer_id()
    assert not leftovers.is_temporary("metadata.json") and not leftovers.is_temporary("part-00000.parquet")
    with pytest.raises(ValueError, match="kind"):
        leftovers.temp_name("x", "bak")


_DECIDE = """
import sys
sys.path.insert(0, {root!r})
from autoroi.approval import decide
from autoroi.lake.storage import open_lake
decide(open_lake({lake!r}), {version!r}, "approve", "alice")
"""


@pytest.mark.parametrize("file", ["{version}.json", "metadata.json"])
def test_a_decision_killed_mid_write_is_finished_and_cleaned_by_the_next(
    lake: Lake, tmp_path: Path, file: str
) -> None:
    """Killed with the approval record (or the status change) still under
    its temporary name: nothing half-written is visible; deciding again
    completes the decision and removes the temporary."""
    mv = register(lake, tmp_path)
    point = "json.before_replace:" + file.format(version=mv.version)
    code = _DECIDE.format(root=str(REPO), lake=lake.uri, version=mv.version)
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "AUTOROI_FAILPOINT": point},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == EXIT_CODE, proc.stderr[-2000:]
    left = temporaries(tmp_path / "lake")
    assert len(left) == 1 and left[0].endswith(".tmp"), left
    if file == "metadata.json":
        assert read_approval(lake, mv.version) is not None  # the record was written, the status not
    else:
        assert read_approval(lake, mv.version) is None
    assert get_version(lake, mv.version).status == "pending_approval"

    decide(lake, mv.version, APPROVE, "alice")
    assert get_version(lake, mv.version).status == "approved"
    assert temporaries(tmp_path / "lake") == []


def test_the_local_target_stops_candidates_of_deploys_that_died(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / CANDIDATES).mkdir(parents=True)
    servers = [
        subprocess.Popen(["sleep", "60"], start_new_session=True)  # stand-ins for model servers
        for _ in range(2)
    ]
    try:
        with live_writer() as alive:
            write_json_local(
                state / CANDIDATES / "v-orphan.json",
                {"version": "v-orphan", "pid": servers[0].pid, "deployer": dead_writer_id()},
            )
            write_json_local(
                state / CANDIDATES / "v-busy.json",
                {"version": "v-busy", "pid": servers[1].pid, "deployer": alive},
            )
            (state / f".endpoint.json.{dead_writer_id()}-abcdef.tmp").write_text("{")
            busy_tmp = state / f".endpoint.json.{alive}-abcdef.tmp"
            busy_tmp.write_text("{")

            stopped = LocalTarget(state, str(tmp_path / "lake")).clean_leftovers()
            assert stopped == ["v-orphan"]
            servers[0].wait(timeout=15)
            assert not pid_alive(servers[0].pid)
            assert pid_alive(servers[1].pid)  # its deploy is still running: not ours to stop
            assert sorted(p.name for p in (state / CANDIDATES).iterdir()) == ["v-busy.json"]
            assert temporaries(state) == [busy_tmp.name]
    finally:
        for p in servers:
            p.kill()
            p.wait()
