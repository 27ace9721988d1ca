"""Static checks of the dashboard's files and its cluster image (no Docker
engine here): offline page, same-origin relative URLs, a pinned unprivileged
nginx base, a template that proxies /v1 and /v2 to the predictor."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STATIC = REPO / "serving" / "dashboard"
DOCKERFILE = REPO / "containers" / "dashboard" / "Dockerfile"
NGINX_CONF = REPO / "containers" / "dashboard" / "nginx.conf"
SVG_NS = "http://www.w3.org/2000/svg"  # a namespace name, never fetched


def test_the_page_fetches_nothing_from_elsewhere() -> None:
    files = sorted(STATIC.iterdir())
    assert {f.name for f in files} == {"index.html", "app.js", "style.css"}
    for f in files:
        text = f.read_text(encoding="utf-8").replace(SVG_NS, "")
        assert not re.search(
            r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", text, re.I
        ), f"{f.name} names another host"
        assert "@import" not in text and "cdn" not in text.lower()
    html = (STATIC / "index.html").read_text()
    for ref in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert not ref.startswith("/") and "://" not in ref, ref  # relative: works under any path prefix


def test_the_script_calls_the_endpoint_with_relative_urls() -> None:
    js = (STATIC / "app.js").read_text()
    assert 'PREDICT_URL = "v1/models/roi:predict"' in js
    assert 'METADATA_URL = "v2/models/roi"' in js
    for call in re.findall(r'(?:fetch|requestJSON)\(\s*"([^"]+)"', js):
        assert not call.startswith("/"), call


def test_the_image_is_pinned_unprivileged_nginx() -> None:
    text = DOCKERFILE.read_text()
    (image,) = re.findall(r"^ARG NGINX_IMAGE=(\S+)$", text, re.M)
    name, _, tag = image.partition(":")
    assert name == "nginxinc/nginx-unprivileged"
    assert re.fullmatch(r"\d+\.\d+\.\d+-alpine[\d.]*", tag), tag  # a version, not latest/stable
    users = re.findall(r"^USER (\S+)$", text, re.M)
    assert users and users[-1] not in ("root", "0")
    for f in ("index.html", "app.js", "style.css"):
        assert f"serving/dashboard/{f}" in text
    assert "containers/dashboard/nginx.conf /etc/nginx/templates/" in text
    assert "nginx -t" in text  # the rendered template is checked at build time
    assert "EXPOSE 8080" in text


def test_the_nginx_template_proxies_v1_and_v2_to_the_predictor() -> None:
    text = NGINX_CONF.read_text()
    assert "listen 8080;" in text
    for prefix in ("/v1/", "/v2/"):
        block = text.split(f"location {prefix} {{", 1)[1].split("\n    }", 1)[0]
        assert "proxy_pass $predictor;" in block
        assert 'proxy_set_header Host "${PREDICTOR_HOST}";' in block
    assert 'set $predictor "${PREDICTOR_SCHEME}://${PREDICTOR_HOST}:${PREDICTOR_PORT}";' in text
    assert "resolver ${NGINX_LOCAL_RESOLVERS}" in text
    assert "location = /healthz" in text
    # every ${VAR} is one the Dockerfile's NGINX_ENVSUBST_FILTER lets through
    for var in set(re.findall(r"\$\{(\w+)\}", text)):
        assert var.startswith("PREDICTOR_") or var == "NGINX_LOCAL_RESOLVERS", var
    env = DOCKERFILE.read_text()
    for var in ("PREDICTOR_HOST", "PREDICTOR_PORT", "PREDICTOR_SCHEME"):
        assert f"{var}=" in env
    assert "NGINX_ENTRYPOINT_LOCAL_RESOLVERS=1" in env
    assert 'NGINX_ENVSUBST_FILTER="^(PREDICTOR_|NGINX_LOCAL_RESOLVERS$)"' in env


@pytest.mark.skipif(
    shutil.which("nginx") is None, reason="no nginx binary here (the image build runs nginx -t)"
)
def test_the_rendered_template_passes_nginx_t(tmp_path: Path) -> None:
    conf = NGINX_CONF.read_text()
    values = {
        "PREDICTOR_HOST": "predictor.example.svc.cluster.local",
        "PREDICTOR_PORT": "80",
        "PREDICTOR_SCHEME": "http",
        "NGINX_LOCAL_RESOLVERS": "127.0.0.1",
    }
    for k, v in values.items():
        conf = conf.replace("${" + k + "}", v)
    conf = conf.replace("/usr/share/nginx/html", str(STATIC))
    (tmp_path / "dashboard.conf").write_text(conf)
    temp = " ".join(
        f"{k}_temp_path {tmp_path}/{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid; error_log stderr; events {{}}\n"
        f"http {{ access_log off; {temp} include {tmp_path}/dashboard.conf; }}\n"
    )
    out = subprocess.run(
        ["nginx", "-t", "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
