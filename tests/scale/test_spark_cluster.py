"""``ingest`` with the master table built on a Spark standalone cluster (a
master and two workers on loopback, executors in their own JVMs) publishes
the same master version as ``local[*]`` from the same source."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoroi.config import load_config
from autoroi.lake.master import MasterStore
from autoroi.lake.storage import open_lake
from pipelines.run import run_local
from tests.dms_source import make_dms_source

pytestmark = [pytest.mark.scale, pytest.mark.pipeline]


def _cfg(tmp: Path, url: str, lake: str, master: str):
    return load_config(
        overrides={
            "source": {"url": url},
            "lake": {"uri": lake},
            "kfp": {"pipeline_root": str(tmp / f"kfp-{lake.rsplit('/', 1)[-1]}")},
            "training": {"on_master_change": False},
            "master": {"spark": {"master": master}},
        }
    )


def test_the_cluster_publishes_the_local_master_version(spark_cluster, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("AUTOROI_HMAC_KEY", "k" * 48)
    monkeypatch.setenv("SPARK_LOCAL_IP", "127.0.0.1")
    source = tmp_path / "dms.sqlite"
    make_dms_source(source)
    url = f"sqlite:///{source}"
    before = {a["id"] for a in spark_cluster.state().get("completedapps", [])}

    local = run_local("ingest", _cfg(tmp_path, url, str(tmp_path / "lake-local"), "local[*]"))
    clustered = run_local("ingest", _cfg(tmp_path, url, str(tmp_path / "lake-cluster"), spark_cluster.url))

    assert local["master_changed"] and clustered["master_changed"]
    assert clustered["master_version"] == local["master_version"]
    a = MasterStore(open_lake(str(tmp_path / "lake-local"))).read().to_pandas()
    b = MasterStore(open_lake(str(tmp_path / "lake-cluster"))).read().to_pandas()
    assert len(a) == len(b) > 0
    # the cluster did the work: a finished application that had both workers' cores
    apps = [x for x in spark_cluster.state().get("completedapps", []) if x["id"] not in before]
    assert apps, "no application ran on the cluster"
    assert max(x["cores"] for x in apps) == 2
