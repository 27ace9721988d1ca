"""Writer identities of dead and live processes, and a finder for what runs leave behind."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from autoroi.lake.leftovers import is_temporary

REPO = Path(__file__).resolve().parents[1]
_PRINT_ID = "from autoroi.lake.leftovers import writer_id; print(writer_id(), flush=True)"
VERSION_DIR = re.compile(r"^v(\d{6,})(?:-w[0-9a-f]{8}p\d+s\d+)?$")


def dead_writer_id() -> str:
    """The identity of a process that has exited."""
    out = subprocess.run(
        [sys.executable, "-c", _PRINT_ID], cwd=REPO, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


@contextlib.contextmanager
def live_writer() -> Iterator[str]:
    """The identity of a process that runs until the block ends."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _PRINT_ID + "; import sys; sys.stdin.read()"],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        yield proc.stdout.readline().strip()
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def temporaries(root: str | Path) -> list[str]:
    """Every temporary name under ``root`` (swap links, ``*.tmp``, staging
    folders), relative to it; links are not followed."""
    found = []
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            if is_temporary(name):
                found.append(os.path.relpath(os.path.join(folder, name), root))
    return sorted(found)


def version_numbers(vdir: Path) -> list[int]:
    """The version numbers of a table's ``_versions/<table>/`` folders."""
    out = []
    for p in vdir.iterdir():
        m = VERSION_DIR.match(p.name)
        assert m, f"unexpected entry {p.name} in {vdir}"
        out.append(int(m.group(1)))
    return sorted(out)
