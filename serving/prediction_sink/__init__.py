"""The prediction sink: KServe's payload-logger CloudEvents in, Parquet rows in the lake out."""
