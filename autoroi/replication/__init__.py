"""Replication of the source database into ``<lake>/raw/`` (DMS-style: full
load, then change capture)."""

from autoroi.replication.replicate import ReplicationReport, drop_replication_slot, replicate_tables

__all__ = ["ReplicationReport", "drop_replication_slot", "replicate_tables"]
