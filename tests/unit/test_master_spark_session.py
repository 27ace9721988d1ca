"""The Spark session's settings (no JVM started here)."""

from autoroi.config import SparkConfig
from autoroi.spark import log4j2_file, session_conf


def test_config_settings_win_and_local_defaults_fill_in():
    cfg = SparkConfig(master="local[2]", conf={"spark.sql.shuffle.partitions": "3"})
    conf = session_conf(cfg)
    assert conf["spark.sql.shuffle.partitions"] == "3"
    assert conf["spark.ui.showConsoleProgress"] == "false"
    assert conf["spark.sql.files.maxPartitionBytes"] == "32m"
    opts = conf["spark.driver.extraJavaOptions"]
    assert "-XX:TieredStopAtLevel=1" in opts and f"-Dlog4j2.configurationFile=file:{log4j2_file()}" in opts
    assert "spark.jars.packages" not in conf  # nothing to download: works offline


def test_cluster_master_gets_no_local_tuning_and_own_java_options_are_kept():
    cfg = SparkConfig(
        master="k8s://https://api.example.com:6443",
        conf={"spark.driver.extraJavaOptions": "-Dfoo=bar", "spark.sql.files.maxPartitionBytes": "64m"},
    )
    conf = session_conf(cfg)
    assert conf["spark.sql.files.maxPartitionBytes"] == "64m"
    assert conf["spark.driver.extraJavaOptions"].startswith("-Dfoo=bar -Dlog4j2.configurationFile=")
    assert "TieredStopAtLevel" not in conf["spark.driver.extraJavaOptions"]
    assert log4j2_file().read_text().startswith("# autoroi")
