"""Approval records: who, when, which digest; the rules for a gate-rejected
version; idempotence after a crash; deploy refuses a changed artifact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autoroi.approval import (
    APPROVE,
    REJECT,
    ApprovalError,
    approval_path,
    decide,
    read_approval,
    require_approval,
)
from autoroi.cli.main import main as cli_main
from autoroi.lake.storage import Lake, open_lake
from autoroi.registry import get_version, set_status
from tests.unit.test_registry import register


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return open_lake(str(tmp_path / "lake"))


def test_approve_records_who_when_digest_and_moves_the_status(lake: Lake, tmp_path: Path):
    mv = register(lake, tmp_path)
    record = decide(lake, mv.version, APPROVE, "alice", "looks right")
    on_disk = json.loads(Path(approval_path(lake, mv.version)).read_text())
    assert on_disk["by"] == "alice" and on_disk["digest"] == mv.digest and on_disk["decision"] == "approve"
    assert on_disk["comment"] == "looks right" and on_disk["at"].startswith("20")
    assert record == read_approval(lake, mv.version)
    assert get_version(lake, mv.version).status == "approved"
    assert require_approval(lake, mv.version).digest == mv.digest


def test_a_gate_rejected_version_needs_override_and_comment(lake: Lake, tmp_path: Path):
    mv = register(lake, tmp_path, passed=False)
    with pytest.raises(ApprovalError, match="--override"):
        decide(lake, mv.version, APPROVE, "alice")
    with pytest.raises(ApprovalError, match="--override"):
        decide(lake, mv.version, APPROVE, "alice", override=True)  # no comment
    assert read_approval(lake, mv.version) is None
    assert get_version(lake, mv.version).status == "rejected_by_gate"
    record = decide(lake, mv.version, APPROVE, "alice", "seasonal naive wins only on one fold", override=True)
    assert record.override is True and record.gate_passed is False
    assert get_version(lake, mv.version).status == "approved"


def test_reject_needs_a_reason_and_is_final(lake: Lake, tmp_path: Path):
    mv = register(lake, tmp_path)
    with pytest.raises(ApprovalError, match="reason"):
        decide(lake, mv.version, REJECT, "bob")
    decide(lake, mv.version, REJECT, "bob", "ROI of dealer cash looks implausible")
    assert get_version(lake, mv.version).status == "rejected"
    with pytest.raises(ApprovalError, match="already rejected"):
        decide(lake, mv.version, APPROVE, "alice", "changed my mind")
    with pytest.raises(ApprovalError, match="rejected by bob"):
        require_approval(lake, mv.version)


def test_deciding_again_after_a_crash_completes_the_status(lake: Lake, tmp_path: Path, monkeypatch):
    mv = register(lake, tmp_path)
    import autoroi.approval as approval

    def crash(*a, **k):
        raise RuntimeError("power cut after the record")

    monkeypatch.setattr(approval, "set_status", crash)
    with pytest.raises(RuntimeError):
        decide(lake, mv.version, APPROVE, "alice")
    assert read_approval(lake, mv.version) is not None
    assert get_version(lake, mv.version).status == "pending_approval"
    monkeypatch.setattr(approval, "set_status", set_status)
    decide(lake, mv.version, APPROVE, "alice")
    assert get_version(lake, mv.version).status == "approved"


def test_deploy_refuses_no_approval_and_a_changed_artifact(lake: Lake, tmp_path: Path):
    mv = register(lake, tmp_path)
    with pytest.raises(ApprovalError, match="no recorded approval"):
        require_approval(lake, mv.version)
    decide(lake, mv.version, APPROVE, "alice")
    (Path(mv.path) / "model" / "model.keras").write_bytes(b"swapped after approval")
    with pytest.raises(ApprovalError, match="not the approved"):
        require_approval(lake, mv.version)


def test_approve_cli_without_deploy_and_errors(lake: Lake, tmp_path: Path, capsys):
    mv = register(lake, tmp_path)
    uri = str(tmp_path / "lake")
    assert cli_main(["approve", mv.version, "--by", "carol", "--lake", uri, "--no-deploy"]) is None
    assert "approved by carol" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        cli_main(["approve", "v20990101-000000-deadbeef", "--by", "carol", "--lake", uri, "--no-deploy"])
    assert e.value.code != 0
    other = register(lake, tmp_path, salt="b")
    with pytest.raises(SystemExit):
        cli_main(["reject", other.version, "--by", "dan", "--lake", uri])  # --comment is required
    assert cli_main(["reject", other.version, "--by", "dan", "--comment", "no", "--lake", uri]) is None
    assert get_version(lake, other.version).status == "rejected"
