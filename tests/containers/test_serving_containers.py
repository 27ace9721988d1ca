"""The model server and the dashboard as containers, hardened as a cluster runs
them: the serving image read-only (a tmpfs for /tmp), non-root, every
capability dropped, no new privileges, serving a registered version from a
mounted lake with the arguments of ``python -m serving.roi_server``; the
dashboard image (nginx) serving the page and proxying /v1 and /v2 to it on a
docker network this test made; the page in Chromium against it."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import browser, screenshot
from tests.browser.test_dashboard_browser import (
    _by_id,
    _loaded,
    _numbers,
    _wait,
    page,
    test_a_week_that_is_not_a_monday_is_refused_by_the_server,
    test_bad_input_shows_the_servers_field_and_reason,
    test_heatmap_renders_region_by_segment,
    test_page_uses_nothing_from_the_network,
    test_roi_curve_renders_as_svg,
    test_the_interval_beside_the_roi_and_the_band_on_the_curve,
    test_what_if_amount_updates_numbers_and_curve,
)
from tests.conftest import free_port
from tests.containers.conftest import REPO
from tests.serving.conftest import roi_artifact
from tests.serving.test_serving_http import SCENARIOS, v2_body

# The dashboard suite's Chromium tests that need no local router (its /report,
# endpoint.json), run here against the two containers through `dashboard` below.
__all__ = [
    "browser",
    "page",
    "roi_artifact",
    "screenshot",
    "test_a_week_that_is_not_a_monday_is_refused_by_the_server",
    "test_bad_input_shows_the_servers_field_and_reason",
    "test_heatmap_renders_region_by_segment",
    "test_page_uses_nothing_from_the_network",
    "test_roi_curve_renders_as_svg",
    "test_the_interval_beside_the_roi_and_the_band_on_the_curve",
    "test_what_if_amount_updates_numbers_and_curve",
]

pytestmark = pytest.mark.containers

Docker = Callable[..., subprocess.CompletedProcess[str]]
HARDENED = ("--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges")
READY_S = 180.0


@dataclass
class Stack:
    network: str
    version: str
    serving_url: str  # the serving container's port, published on 127.0.0.1
    dashboard_url: str
    serving: str
    dashboard: str


@pytest.fixture(scope="module")
def served_lake(roi_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A local lake whose registry holds the test artifact as an approved version."""
    from autoroi.approval import APPROVE, decide
    from autoroi.lake.storage import open_lake
    from autoroi.registry.store import register_model

    root = tmp_path_factory.mktemp("served-lake") / "lake"
    lake = open_lake(str(root))
    gate = {"passed": True, "reasons": [], "checks": []}
    meta = {"master_version": "m-test", "metrics": {"wape": 0.3}, "gate": gate}
    mv = register_model(lake, roi_artifact, meta, {}, "<html>report</html>", "pending_approval")
    decide(lake, mv.version, APPROVE, "tester")
    # the containers' users (1000, 101) read it through a read-only bind mount
    for dirpath, _dirs, files in os.walk(root):
        os.chmod(dirpath, 0o755)
        for f in files:
            os.chmod(os.path.join(dirpath, f), 0o644)
    return root, mv.version


def _wait_http(url: str, what: str, logs: Callable[[], str], timeout: float = READY_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise AssertionError(f"{what} did not answer {url} within {timeout:g} s\n{logs()[-4000:]}")


@pytest.fixture(scope="module")
def stack(images: dict[str, str], docker: Docker, served_lake: tuple[Path, str]) -> Iterator[Stack]:
    lake, version = served_lake
    tag = uuid.uuid4().hex[:8]
    network, serving, dashboard = f"autoroi-test-{tag}", f"autoroi-serving-{tag}", f"autoroi-dashboard-{tag}"
    serving_port, dashboard_port = free_port(), free_port()
    docker("network", "create", network)
    try:
        docker(
            "run", "-d", "--name", serving, "--network", network, "--network-alias", "roi-predictor",
            "-p", f"127.0.0.1:{serving_port}:8080", *HARDENED, "--user", "1000:1000",
            "-v", f"{lake}:/lake:ro", images["serving"],
            "python", "-m", "serving.roi_server", "--lake", "/lake", "--version", version,
            "--http_port", "8080", "--enable_grpc", "false",
        )  # fmt: skip
        docker(
            "run", "-d", "--name", dashboard, "--network", network,
            "-p", f"127.0.0.1:{dashboard_port}:8080", *HARDENED,
            "-e", "PREDICTOR_HOST=roi-predictor", "-e", "PREDICTOR_PORT=8080", images["dashboard"],
        )  # fmt: skip
        s = Stack(
            network,
            version,
            f"http://127.0.0.1:{serving_port}",
            f"http://127.0.0.1:{dashboard_port}",
            serving,
            dashboard,
        )

        def logs(name: str) -> Callable[[], str]:
            return lambda: (lambda p: p.stdout + p.stderr)(docker("logs", name, check=False))

        _wait_http(f"{s.serving_url}/v2/health/ready", "the serving container", logs(serving))
        _wait_http(f"{s.dashboard_url}/healthz", "the dashboard container", logs(dashboard))
        yield s
    finally:
        for name in (dashboard, serving):
            docker("rm", "-f", name, check=False)
        docker("network", "rm", network, check=False)


@dataclass
class ContainerDashboard:
    """What the dashboard suite's `page` fixture needs of a dashboard."""

    url: str
    version: str

    def restore(self) -> None:
        """Nothing to restore: the containers' wiring is fixed."""


@pytest.fixture(scope="module")
def dashboard(stack: Stack) -> ContainerDashboard:
    return ContainerDashboard(stack.dashboard_url, stack.version)


def test_the_server_container_answers_v1_v2_and_health(stack: Stack, docker: Docker) -> None:
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/roi/ready"):
        assert httpx.get(stack.serving_url + path, timeout=10).status_code == 200, path
    meta = httpx.get(f"{stack.serving_url}/v2/models/roi", timeout=10).json()
    assert meta["name"] == "roi"
    v1 = httpx.post(
        f"{stack.serving_url}/v1/models/roi:predict", json={"instances": SCENARIOS[:2]}, timeout=30
    )
    assert v1.status_code == 200, v1.text
    preds = v1.json()["predictions"]
    assert len(preds) == 2
    for p in preds:
        assert p["predicted_units"] > 0 and p["baseline_units"] > 0 and "roi" in p
        assert {"roi_lower", "roi_upper", "prob_pays_back", "cell_level"} <= set(p)
    v2 = httpx.post(f"{stack.serving_url}/v2/models/roi/infer", json=v2_body(SCENARIOS[:2]), timeout=30)
    assert v2.status_code == 200, v2.text
    by_name = {o["name"]: o["data"] for o in v2.json()["outputs"]}
    assert by_name["predicted_units"] == pytest.approx([p["predicted_units"] for p in preds], rel=1e-6)
    assert by_name["roi"] == [p["roi"] for p in preds]
    bad = httpx.post(
        f"{stack.serving_url}/v1/models/roi:predict", json={"instances": [{"region": "x"}]}, timeout=30
    )
    assert bad.status_code == 400 and "vehicle_model" in bad.text
    # as hardened as asked: read-only, non-root, no capabilities, no new privileges
    state = docker("inspect", "-f", "{{json .HostConfig.ReadonlyRootfs}} {{json .HostConfig.CapDrop}} "
                   "{{json .HostConfig.SecurityOpt}} {{.Config.User}}", stack.serving).stdout  # fmt: skip
    assert state.split()[0] == "true" and '"ALL"' in state and "no-new-privileges" in state
    assert state.split()[-1] == "1000:1000"
    proc = docker(
        "exec", stack.serving, "sh", "-c", "id -u; touch /app/x 2>&1; grep CapEff /proc/self/status"
    )
    uid, refused, caps = proc.stdout.strip().splitlines()
    assert uid == "1000" and "Read-only file system" in refused and caps.split()[-1] == "0000000000000000"


def test_the_dashboard_container_serves_the_page_and_proxies_to_the_server(stack: Stack) -> None:
    page = httpx.get(f"{stack.dashboard_url}/", timeout=10)
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert "default-src 'self'" in page.headers["content-security-policy"]
    direct = httpx.post(
        f"{stack.serving_url}/v1/models/roi:predict", json={"instances": SCENARIOS[:1]}, timeout=30
    )
    proxied = httpx.post(
        f"{stack.dashboard_url}/v1/models/roi:predict", json={"instances": SCENARIOS[:1]}, timeout=30
    )
    assert proxied.status_code == 200, proxied.text
    assert proxied.json()["predictions"] == direct.json()["predictions"]
    v2 = httpx.get(f"{stack.dashboard_url}/v2/models/roi", timeout=10)
    assert v2.status_code == 200 and v2.json()["name"] == "roi"


def test_nginx_t_passes_inside_the_dashboard_image(
    images: dict[str, str], docker: Docker, tmp_path: Path
) -> None:
    """The rendered template passes ``nginx -t`` in the image (as the build
    checks it), and a broken template does not (so the check can fail)."""
    args = (
        "run", "--rm", "--network", "none", *HARDENED,
        "-e", "PREDICTOR_HOST=predictor.example.svc.cluster.local", "-e", "NGINX_LOCAL_RESOLVERS=127.0.0.1",
    )  # fmt: skip
    proc = docker(*args, images["dashboard"], "nginx", "-t")
    assert "syntax is ok" in proc.stderr and "test is successful" in proc.stderr, proc.stderr
    template = (REPO / "containers" / "dashboard" / "nginx.conf").read_text()
    broken = tmp_path / "dashboard.conf.template"
    broken.write_text(template.replace("proxy_pass $predictor;", "proxy_pas $predictor;", 1))
    broken.chmod(0o644)
    mount = ("-v", f"{broken}:/etc/nginx/templates/dashboard.conf.template:ro")
    proc = docker(*args, *mount, images["dashboard"], "nginx", "-t", check=False)
    assert proc.returncode != 0 and 'unknown directive "proxy_pas"' in proc.stderr, proc.stderr


@pytest.mark.browser
def test_the_page_in_chromium_against_the_containers(browser: Any, stack: Stack) -> None:
    browser.get(f"{stack.dashboard_url}/")
    _wait(browser, "the first prediction, curve and heatmap", _loaded, timeout=60)
    _wait(browser, "the model version", lambda d: _by_id(d, "model-version").text == stack.version)
    values = _numbers(browser)
    float(values["roi"])
    assert _by_id(browser, "roi").text.endswith("%")
    assert float(values["predicted_units"]) > 0
    assert _by_id(browser, "errors").get_attribute("hidden") is not None
