"""The scale tier's Spark standalone cluster: a master and two workers (one
core and 1 GiB each) on loopback, for the session (``cluster.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.scale.cluster import SparkCluster, standalone_cluster


@pytest.fixture(scope="session")
def spark_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkCluster]:
    with standalone_cluster(tmp_path_factory.mktemp("spark-cluster")) as cluster:
        yield cluster
