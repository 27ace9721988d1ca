"""Static checks of the dashboard's files and its cluster image (no Docker
engine needed): offline page, same-origin relative URLs, Debian's nginx-light
on a pinned Debian base running as an unprivileged user, a template that
proxies /v1 and /v2 to the predictor and that the image's entrypoint.sh
renders (``nginx -t`` inside the built image: tests/containers/)."""

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
NGINX_MAIN_CONF = REPO / "containers" / "dashboard" / "nginx-main.conf"
ENTRYPOINT = REPO / "containers" / "dashboard" / "entrypoint.sh"
TEMPLATE = "/etc/nginx/templates/dashboard.conf.template"
ENVSUBST_VARS = {"PREDICTOR_HOST", "PREDICTOR_PORT", "PREDICTOR_SCHEME", "NGINX_LOCAL_RESOLVERS"}
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


def _envsubst_vars() -> set[str]:
    """The variables entrypoint.sh's envsubst replaces (its SHELL-FORMAT list)."""
    (listed,) = re.findall(r"envsubst '([^']*)'", ENTRYPOINT.read_text())
    return set(re.findall(r"\$\{(\w+)\}", listed))


def _final_env() -> dict[str, str]:
    """ENV NAME=value of the Dockerfile's final stage (continuation lines joined)."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    final = re.split(r"^FROM .*$", text, flags=re.M)[-1]
    env: dict[str, str] = {}
    for line in re.findall(r"^ENV (.*)$", final, re.M):
        env.update(re.findall(r"(\w+)=(\S+)", line))
    return env


def test_the_image_is_pinned_unprivileged_nginx() -> None:
    text = DOCKERFILE.read_text()
    (image,) = re.findall(r"^ARG BASE_IMAGE=(\S+)$", text, re.M)
    name, _, tag = image.partition(":")
    assert name == "debian"
    assert re.fullmatch(r"\d+\.\d+-slim", tag), tag  # a point release, not latest/stable/bookworm
    froms = re.findall(r"^FROM (.+)$", text, re.M)
    assert froms[0] == "${BASE_IMAGE} AS nginx" and froms[-1] == "nginx", froms
    install = re.search(r"apt-get install -y --no-install-recommends ([^\\&\n]+)", text)
    assert install and set(install.group(1).split()) == {"nginx-light", "gettext-base"}, install
    # an unprivileged user that exists in the image, and the last USER
    assert re.search(r"useradd --uid 101 ", text)
    users = re.findall(r"^USER (\S+)$", text, re.M)
    assert users and users[-1] == "101"
    for f in ("index.html", "app.js", "style.css"):
        assert f"serving/dashboard/{f}" in text
    assert re.search(r"style\.css \\\n\s+/usr/share/nginx/html/$", text, re.M)
    assert f"COPY containers/dashboard/nginx.conf {TEMPLATE}\n" in text
    assert "COPY containers/dashboard/nginx-main.conf /etc/nginx/nginx.conf\n" in text
    assert (
        "COPY --chmod=0755 containers/dashboard/entrypoint.sh /usr/local/bin/dashboard-entrypoint\n" in text
    )
    # the rendered template is checked at build time (nginx -t in the check stage),
    # and the final stage depends on that stage, so BuildKit cannot skip it
    assert "FROM nginx AS check" in text
    check = text.split("FROM nginx AS check", 1)[1].split("\nFROM ", 1)[0]
    assert "dashboard-entrypoint nginx -t" in check
    assert re.search(r"^COPY --from=check ", text, re.M)
    assert "EXPOSE 8080" in text
    assert 'ENTRYPOINT ["/usr/local/bin/dashboard-entrypoint"]' in text
    # the nginxinc/nginx-unprivileged base and its entrypoint's settings are gone
    for gone in ("nginx-unprivileged", "NGINX_ENVSUBST_FILTER", "NGINX_ENTRYPOINT_LOCAL_RESOLVERS"):
        assert gone not in text, gone


def test_the_main_config_runs_as_the_unprivileged_user_on_a_read_only_root() -> None:
    conf = NGINX_MAIN_CONF.read_text()
    code = "\n".join(line.split("#", 1)[0] for line in conf.splitlines())
    assert not re.search(r"^\s*user\s", code, re.M), "a `user` directive needs a root master"
    assert re.search(r"^pid /tmp/", code, re.M)
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        assert re.search(rf"^\s*{kind}_temp_path /tmp/", code, re.M), kind
    # the rendered server lives under /tmp too (the one writable path), where the entrypoint writes it
    assert "include /tmp/nginx/conf.d/*.conf;" in code
    script = ENTRYPOINT.read_text()
    assert '"${DASHBOARD_CONF_DIR:-/tmp/nginx/conf.d}"' in script


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
    # every ${VAR} is one that entrypoint.sh's envsubst replaces, and no nginx
    # $variable is one of them (envsubst would replace its $NAME form as well)
    listed = _envsubst_vars()
    assert listed == ENVSUBST_VARS, listed
    for var in set(re.findall(r"\$\{(\w+)\}", text)):
        assert var in listed, var
    assert not set(re.findall(r"\$(\w+)", text)) & listed
    script = ENTRYPOINT.read_text()
    assert f"<{TEMPLATE} " in script
    assert "/etc/resolv.conf" in script  # NGINX_LOCAL_RESOLVERS defaults to the pod's nameservers
    # the predictor's address has defaults in the image
    env = _final_env()
    assert env.get("PREDICTOR_HOST", "").endswith(
        ".svc.cluster.local"
    ), env  # nginx's resolver: no search domains
    assert env.get("PREDICTOR_PORT", "").isdigit(), env
    assert env.get("PREDICTOR_SCHEME") in ("http", "https"), env


@pytest.mark.skipif(shutil.which("envsubst") is None, reason="no envsubst here (Debian's gettext-base)")
def test_the_entrypoint_renders_only_its_variables(tmp_path: Path) -> None:
    """entrypoint.sh with its paths moved under tmp_path: the predictor's
    address and the nameservers of resolv.conf go in, nginx's $variables stay,
    and the arguments run instead of nginx."""
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "resolv.conf").write_text(
        "search autoroi.svc.cluster.local\nnameserver 10.96.0.10\nnameserver fd00::a\n"
    )
    (tmp_path / "template").write_text(NGINX_CONF.read_text())
    script = ENTRYPOINT.read_text().replace("/etc/resolv.conf", str(tmp_path / "resolv.conf"))
    script = script.replace(TEMPLATE, str(tmp_path / "template"))
    assert str(tmp_path) in script
    (tmp_path / "entrypoint.sh").write_text(script)
    env = {
        "PATH": "/usr/bin:/bin",
        "PREDICTOR_HOST": "roi-predictor.autoroi.svc.cluster.local",
        "PREDICTOR_PORT": "80",
        "PREDICTOR_SCHEME": "http",
        "DASHBOARD_CONF_DIR": str(tmp_path / "conf.d"),
        "uri": "SHOULD-NOT-APPEAR",
    }
    proc = subprocess.run(
        ["sh", str(tmp_path / "entrypoint.sh"), "echo", "started"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0 and proc.stdout == "started\n", proc.stderr
    conf = (tmp_path / "conf.d" / "dashboard.conf").read_text()
    assert re.search(r"^\s*resolver 10\.96\.0\.10 \[fd00::a\]\s+valid=30s", conf, re.M), conf
    assert 'set $predictor "http://roi-predictor.autoroi.svc.cluster.local:80";' in conf
    assert 'proxy_set_header Host "roi-predictor.autoroi.svc.cluster.local";' in conf
    assert "try_files $uri $uri/ =404;" in conf and "SHOULD-NOT-APPEAR" not in conf
    code = "\n".join(line for line in conf.splitlines() if not line.lstrip().startswith("#"))
    assert "${" not in code
