"""The master table: curated tables to one k-anonymous, featured row per
(region, vehicle model, week) cell, built by PySpark.

``build_master_table`` composes the pure transforms of ``transforms`` and
``calendar``; ``io`` holds the reading and writing around them for the
``preprocess`` component. Importing this package needs pyspark.
"""

from autoroi.master.build import COLUMNS, LevelCounts, MasterReport, build_master_table, check_curated
from autoroi.master.transforms import LEVELS, CellLevel

__all__ = [
    "COLUMNS",
    "LEVELS",
    "CellLevel",
    "LevelCounts",
    "MasterReport",
    "build_master_table",
    "check_curated",
]
