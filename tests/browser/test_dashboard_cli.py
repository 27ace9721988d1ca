"""``autoroi dashboard --background`` and ``--stop``: a real router process,
no model (the page loads; the endpoint says that no version is deployed)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import yaml

from autoroi.cli.main import main
from autoroi.config import load_config
from autoroi.deploy.local import pid_alive
from tests.conftest import free_port


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "autoroi.yaml"
    doc = {
        "lake": {"uri": str(tmp_path / "lake")},
        "serving": {"state_dir": str(tmp_path / "serving"), "port": free_port()},
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def test_background_start_reuse_and_stop(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = load_config(config)
    url = f"http://{cfg.serving.host}:{cfg.serving.port}"
    pid = 0
    try:
        main(["dashboard", "--config", str(config), "--background"])
        out = capsys.readouterr().out
        assert f"{url}/" in out
        assert "no model version is deployed yet" in out
        assert "autoroi dashboard --stop" in out
        page = httpx.get(f"{url}/", timeout=10)
        assert page.status_code == 200 and "Incentive ROI" in page.text
        assert httpx.get(f"{url}/endpoint", timeout=10).status_code == 503
        pid_doc = Path(cfg.serving.state_dir) / "router.json"
        pid = int(json.loads(pid_doc.read_text())["pid"])
        assert pid_alive(pid)

        main(["dashboard", "--config", str(config), "--background"])  # already running: reused
        assert f"{url}/" in capsys.readouterr().out
        assert int(json.loads(pid_doc.read_text())["pid"]) == pid

        with pytest.raises(SystemExit):  # the foreground mode refuses a second server
            main(["dashboard", "--config", str(config)])
        assert "already runs in the background" in capsys.readouterr().err
    finally:
        main(["dashboard", "--config", str(config), "--stop"])
    assert "stopped the dashboard" in capsys.readouterr().out
    assert not pid_alive(pid)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/healthz", timeout=2)
    main(["dashboard", "--config", str(config), "--stop"])
    assert "no dashboard is running" in capsys.readouterr().out
