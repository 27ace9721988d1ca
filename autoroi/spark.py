"""The Spark session every Spark step uses, built from ``SparkConfig``.

``spark.master``, the application name and every further setting come from the
config (``master.spark``), so the same code runs ``local[*]`` on a laptop and
against ``k8s://https://...`` in a cluster. The builder adds only what keeps a
run quiet and self-contained, and only where the config does not say otherwise:

* Spark's own log output goes to stderr at WARN and above for Spark's chatty
  loggers (a log4j2 file written once to the temp folder, passed with
  ``-Dlog4j2.configurationFile``), and the console progress bar is off;
* with a ``local`` master, the driver binds to 127.0.0.1 (``SPARK_LOCAL_IP``):
  no hostname look-up, no network needed;
* nothing is fetched: no ``spark.jars.packages`` unless the config names some
  (a cluster image brings its jars), so a run works offline;
* with a ``local`` master, input splits of at most 32 MiB and a JVM tuned for
  one short batch (``LOCAL_DEFAULTS``).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from autoroi.config import SparkConfig

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

_LOG4J2 = """\
# autoroi: Spark logs at WARN to stderr; known start-up noise at ERROR
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n%ex
logger.nativecode.name = org.apache.hadoop.util.NativeCodeLoader
logger.nativecode.level = error
logger.utils.name = org.apache.spark.util.Utils
logger.utils.level = error
logger.jetty.name = org.sparkproject.jetty
logger.jetty.level = error
logger.parquet.name = org.apache.parquet
logger.parquet.level = error
logger.cachemanager.name = org.apache.spark.sql.execution.CacheManager
logger.cachemanager.level = error
logger.windowexec.name = org.apache.spark.sql.execution.window
logger.windowexec.level = error
logger.stringutils.name = org.apache.spark.util.SparkStringUtils
logger.stringutils.level = error
"""

# Set unless the config says otherwise.
QUIET_DEFAULTS = {
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
}
# With a local master, also (unless the config says otherwise):
# - splits of at most 32 MiB, so that a table of a few hundred MiB gives each core
#   several tasks rather than one or two uneven ones (Spark's default is 128 MiB);
# - a JVM tuned for one short batch: the C1 JIT only (C2 spends more CPU compiling
#   Spark's generated code than a build of 10 M rows saves by it: the first build in
#   a fresh JVM drops from 17 to 14 s on 2 cores) and the throughput collector.
#   In a cluster the executors are other JVMs, configured on their own.
LOCAL_DEFAULTS = {
    "spark.sql.files.maxPartitionBytes": "32m",
    "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseParallelGC",
}


# Reading s3:// tables in Spark's executors (s3a://): the Hadoop AWS connector
# 3.3.1 (containers/hadoop-aws.sh puts it into pyspark's jars) on the Hadoop 3.5
# client that pyspark bundles. 3.5's defaults write durations as "60s", which
# the 3.3 connector reads as numbers: these are the same values in its units.
S3A_DEFAULTS = {
    "spark.hadoop.fs.s3a.path.style.access": "true",
    "spark.hadoop.fs.s3a.threads.keepalivetime": "60",
    "spark.hadoop.fs.s3a.connection.establish.timeout": "30000",
    "spark.hadoop.fs.s3a.connection.timeout": "200000",
    "spark.hadoop.fs.s3a.multipart.purge.age": "86400",
    "spark.hadoop.fs.s3a.retry.interval": "500",
    "spark.hadoop.fs.s3a.retry.throttle.interval": "100",
    "spark.hadoop.fs.s3a.assumed.role.session.duration": "1800",
    "spark.hadoop.fs.s3a.multipart.size": "67108864",
    "spark.hadoop.fs.s3a.multipart.threshold": "134217728",
    "spark.hadoop.fs.s3a.block.size": "33554432",
    "spark.hadoop.fs.s3a.readahead.range": "65536",
}


def s3a_conf(endpoint_url: str | None, region: str) -> dict[str, str]:
    """Spark settings that let every executor read ``s3a://`` paths of the
    lake's S3 store: its endpoint, and the credentials of the environment
    (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, handed to the executors)
    or else the SDK's default chain (a pod's role)."""
    conf = {**S3A_DEFAULTS, "spark.hadoop.fs.s3a.endpoint.region": region}
    if endpoint_url:
        conf["spark.hadoop.fs.s3a.endpoint"] = endpoint_url
        conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = str(endpoint_url.startswith("https")).lower()
    access, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if access and secret:
        conf["spark.hadoop.fs.s3a.aws.credentials.provider"] = (
            "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"
        )
        conf["spark.hadoop.fs.s3a.access.key"] = access
        conf["spark.hadoop.fs.s3a.secret.key"] = secret
    else:
        conf["spark.hadoop.fs.s3a.aws.credentials.provider"] = (
            "com.amazonaws.auth.DefaultAWSCredentialsProviderChain"
        )
    return conf


def log4j2_file() -> Path:
    """The quiet log4j2 configuration, written once per content to the temp folder."""
    digest = hashlib.sha256(_LOG4J2.encode()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / f"autoroi-log4j2-{digest}.properties"
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(_LOG4J2, encoding="utf-8")
        os.replace(tmp, path)
    return path


def session_conf(cfg: SparkConfig) -> dict[str, str]:
    """Every setting the builder gets: the config's, plus the quiet defaults it
    does not override. The log4j2 option is appended to any driver Java options
    the config sets."""
    local = cfg.master.startswith("local")
    conf = {**QUIET_DEFAULTS, **(LOCAL_DEFAULTS if local else {}), **cfg.conf}
    log_opt = f"-Dlog4j2.configurationFile=file:{log4j2_file()}"
    java_opts = conf.get("spark.driver.extraJavaOptions", "")
    if "log4j2.configurationFile" not in java_opts:
        conf["spark.driver.extraJavaOptions"] = f"{java_opts} {log_opt}".strip()
    return conf


def spark_session(cfg: SparkConfig, extra: dict[str, str] | None = None) -> SparkSession:
    """A Spark session for ``cfg`` (``getOrCreate``: a session already running in
    this process is reused, with the config's SQL settings applied to it).
    ``extra``: settings under the config's (the S3A ones of an s3:// input)."""
    from pyspark.sql import SparkSession

    if cfg.master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder.master(cfg.master).appName(cfg.app_name)
    for key, value in {**(extra or {}), **session_conf(cfg)}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
