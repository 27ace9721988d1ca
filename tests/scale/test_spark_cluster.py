"""``ingest`` with the master table built on a Spark standalone cluster (a
master and two workers on loopback, executors in their own JVMs) publishes
the same master version as ``local[*]`` from the same source."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from autoroi.config import load_config
from autoroi.lake.master import MasterStore
from autoroi.lake.storage import open_lake
from autoroi.master.io import PART_FILE
from pipelines.run import run_local
from tests.dms_source import make_dms_source

pytestmark = [pytest.mark.scale, pytest.mark.pipeline]


def _cfg(tmp: Path, url: str, lake: str, master: str, **lake_settings: str):
    return load_config(
        overrides={
            "source": {"url": url},
            "lake": {"uri": lake, **lake_settings},
            "kfp": {"pipeline_root": str(tmp / f"kfp-{lake.rsplit('/', 1)[-1]}")},
            "training": {"on_master_change": False},
            "master": {"spark": {"master": master}},
        }
    )


@pytest.mark.s3
def test_the_cluster_publishes_the_local_master_version(spark_cluster, s3_lake, tmp_path: Path, monkeypatch):
    """Three ingests of one source: ``local[*]`` on a local lake, the cluster
    on a local lake, the cluster on a lake on the S3 server (moto's emulator):
    one master version."""
    monkeypatch.setenv("AUTOROI_HMAC_KEY", "k" * 48)
    monkeypatch.setenv("SPARK_LOCAL_IP", "127.0.0.1")
    source = tmp_path / "dms.sqlite"
    make_dms_source(source)
    url = f"sqlite:///{source}"
    before = {a["id"] for a in spark_cluster.completed_apps()}

    local = run_local("ingest", _cfg(tmp_path, url, str(tmp_path / "lake-local"), "local[*]"))
    clustered = run_local("ingest", _cfg(tmp_path, url, str(tmp_path / "lake-cluster"), spark_cluster.url))

    on_s3 = run_local(
        "ingest",
        _cfg(tmp_path, url, s3_lake.uri, spark_cluster.url, s3_endpoint_url=s3_lake.endpoint_url),
    )

    assert local["master_changed"] and clustered["master_changed"] and on_s3["master_changed"]
    assert clustered["master_version"] == local["master_version"] == on_s3["master_version"]
    assert any(k.startswith(f"{s3_lake.prefix}/master/") for k in s3_lake.list_keys())
    a = MasterStore(open_lake(str(tmp_path / "lake-local"))).read().to_pandas()
    b = MasterStore(open_lake(str(tmp_path / "lake-cluster"))).read().to_pandas()
    assert len(a) == len(b) > 0
    # the cluster did the work: a finished application that had both workers' cores
    apps = [x for x in spark_cluster.completed_apps() if x["id"] not in before]
    assert apps, "no application ran on the cluster"
    assert max(x["cores"] for x in apps) == 2


_PREPROCESS = """
import json, sys
from autoroi.config import LakeConfig, load_config
from autoroi.master.io import preprocess_dir
cfg = load_config(overrides={"master": {"spark": {"master": sys.argv[1]}}}).master
r = preprocess_dir(cfg, sys.argv[2], sys.argv[3], LakeConfig(s3_endpoint_url=sys.argv[4] or None))
print(json.dumps({"rows": r.rows}))
"""


def _loopback() -> dict[str, str]:
    """This process's environment (the test's AWS_* variables), the driver on loopback."""
    return {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}


def _preprocess(master: str, curated: str, out: Path, endpoint: str = "") -> None:
    """The preprocess step's body in a process of its own (one Spark driver per process)."""
    proc = subprocess.run(
        [sys.executable, "-c", _PREPROCESS, master, curated, str(out), endpoint],
        capture_output=True, text=True, check=False, timeout=600, env=_loopback(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.s3
def test_executors_read_curated_tables_from_s3_through_s3a(spark_cluster, s3_lake, tmp_path: Path):
    """The preprocess step with curated tables on the S3 server (the moto
    emulator) and the cluster's executors reading them through ``s3a://``
    (the Hadoop AWS jars of containers/hadoop-aws.sh): the same master table,
    byte for byte, as ``local[*]`` on a local copy."""
    from autoroi.master.sample import curated_like
    from autoroi.source.simulator import simulate

    curated = curated_like(simulate(7, sales_rows=40_000).tables)
    local = tmp_path / "curated"
    for name, table in curated.items():
        (local / name).mkdir(parents=True)
        pq.write_table(table, local / name / "part-00000.parquet")
        s3_lake.client.put_object(
            Bucket=s3_lake.bucket, Key=f"run/curated/{name}/part-00000.parquet",
            Body=(local / name / "part-00000.parquet").read_bytes(),
        )  # fmt: skip
    s3_lake.client.put_object(Bucket=s3_lake.bucket, Key="run/curated/_report.json", Body=b"{}")
    before = {a["id"] for a in spark_cluster.completed_apps()}

    _preprocess("local[*]", str(local), tmp_path / "master-local")
    remote = f"s3://{s3_lake.bucket}/run/curated"
    _preprocess(spark_cluster.url, remote, tmp_path / "master-s3", s3_lake.endpoint_url)

    a = (tmp_path / "master-local" / PART_FILE).read_bytes()
    b = (tmp_path / "master-s3" / PART_FILE).read_bytes()
    assert len(a) > 1000 and a == b
    apps = [x for x in spark_cluster.completed_apps() if x["id"] not in before]
    assert apps and max(x["cores"] for x in apps) == 2
    # a missing table on S3 is named
    s3_lake.client.delete_object(Bucket=s3_lake.bucket, Key="run/curated/sales/part-00000.parquet")
    proc = subprocess.run(
        [sys.executable, "-c", _PREPROCESS, "local[1]", remote, str(tmp_path / "m3"), s3_lake.endpoint_url],
        capture_output=True, text=True, check=False, timeout=600, env=_loopback(),
    )  # fmt: skip
    assert proc.returncode != 0 and "curated table 'sales' is missing" in proc.stderr
