"""Fixtures of the container tier (``make test-containers``; marker ``containers``,
not in ``make test``): the images that ``make images`` built for this commit.

images (session)   dict kind -> reference, ``<kfp.image_registry>/<kind>:<git sha>``:
                   the references ``autoroi compile`` pins (the serving image: the
                   repository of ``serving.image`` with the same tag)
docker (session)   the Docker CLI (Debian's ``/usr/bin/docker``) as a callable
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
KINDS = ("components", "spark", "trainer", "serving", "dashboard")


def docker_cli() -> str:
    for candidate in ("/usr/bin/docker", shutil.which("docker")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("no docker CLI: `make images` installs Debian's docker.io")


def git_sha() -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture(scope="session")
def docker() -> Callable[..., subprocess.CompletedProcess[str]]:
    cli = docker_cli()

    def run(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [cli, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"docker {' '.join(args[:3])} ... exited {proc.returncode}:\n{proc.stderr[-3000:]}"
            )
        return proc

    if run("info", check=False, timeout=30).returncode != 0:
        pytest.fail("no Docker engine answers: `make images` starts dockerd (root)")
    return run


@pytest.fixture(scope="session")
def sha() -> str:
    return git_sha()


@pytest.fixture(scope="session")
def images(docker: Callable[..., subprocess.CompletedProcess[str]], sha: str) -> dict[str, str]:
    from autoroi.config import load_config
    from pipelines.run import image_refs

    refs = image_refs(load_config(), sha)
    missing = [ref for ref in refs.values() if docker("image", "inspect", ref, check=False).returncode != 0]
    if missing:
        pytest.fail(f"images of this commit not built: {', '.join(missing)} (run `make images`)")
    return refs
