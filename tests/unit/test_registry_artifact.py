"""The registry's digest is the artifact's digest (loads TensorFlow: kept apart)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.fs as pafs

from autoroi.registry import store


def test_registry_digest_and_files_match_the_model_artifact(tmp_path: Path):
    from autoroi.model import artifact

    assert store.ARTIFACT_FILES == artifact.ARTIFACT_FILES
    folder = tmp_path / "art"
    folder.mkdir()
    for i, name in enumerate(artifact.ARTIFACT_FILES):
        (folder / name).write_bytes(bytes(range(256)) * (i + 1))
    assert store.tree_digest(pafs.LocalFileSystem(), str(folder)) == artifact.artifact_digest(folder)
