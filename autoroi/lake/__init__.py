"""The data lake: a local folder (embedded default) or ``s3://bucket/prefix``."""

from autoroi.lake.storage import Lake, open_lake
from autoroi.lake.tables import FileEntry, TableManifest, TableStore

__all__ = ["FileEntry", "Lake", "TableManifest", "TableStore", "open_lake"]
