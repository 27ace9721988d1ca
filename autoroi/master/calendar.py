"""Calendar features of a week, computed by Spark without a network or a UDF.

US federal holidays are rules, not a downloaded list: fixed dates (New Year's
Day, Juneteenth, Independence Day, Veterans Day, Christmas) and nth weekdays
(MLK Day, Presidents' Day, Memorial Day, Labor Day, Columbus Day,
Thanksgiving). The actual dates count, not the weekday a holiday on a weekend
is observed on: the week (Monday to Sunday) holds both in all but the Sunday
case. ``HOLIDAY_RULES`` is the one list; the DuckDB reference of the
benchmark renders the same rules as SQL.
"""

from __future__ import annotations

import calendar as _cal
from dataclasses import dataclass
from datetime import date, timedelta
from functools import reduce
from typing import Literal

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

# ISO weekdays: 1 = Monday ... 7 = Sunday
MONDAY, THURSDAY = 1, 4


@dataclass(frozen=True)
class HolidayRule:
    name: str
    month: int
    kind: Literal["fixed", "nth", "last"]
    day: int = 0  # fixed: day of month
    weekday: int = 0  # nth/last: ISO weekday
    n: int = 0  # nth: 1 = first

    def on(self, year: int) -> date:
        """The holiday's date in ``year`` (plain Python; tests and references)."""
        if self.kind == "fixed":
            return date(year, self.month, self.day)
        if self.kind == "nth":
            first = date(year, self.month, 1)
            return first + timedelta(days=(self.weekday - first.isoweekday()) % 7 + 7 * (self.n - 1))
        last = date(year, self.month, _cal.monthrange(year, self.month)[1])
        return last - timedelta(days=(last.isoweekday() - self.weekday) % 7)


HOLIDAY_RULES: tuple[HolidayRule, ...] = (
    HolidayRule("New Year's Day", 1, "fixed", day=1),
    HolidayRule("Martin Luther King Jr. Day", 1, "nth", weekday=MONDAY, n=3),
    HolidayRule("Presidents' Day", 2, "nth", weekday=MONDAY, n=3),
    HolidayRule("Memorial Day", 5, "last", weekday=MONDAY),
    HolidayRule("Juneteenth", 6, "fixed", day=19),
    HolidayRule("Independence Day", 7, "fixed", day=4),
    HolidayRule("Labor Day", 9, "nth", weekday=MONDAY, n=1),
    HolidayRule("Columbus Day", 10, "nth", weekday=MONDAY, n=2),
    HolidayRule("Veterans Day", 11, "fixed", day=11),
    HolidayRule("Thanksgiving", 11, "nth", weekday=THURSDAY, n=4),
    HolidayRule("Christmas Day", 12, "fixed", day=25),
)


def us_holidays(year: int) -> list[date]:
    """The federal holidays of ``year`` by the rules above."""
    return sorted(rule.on(year) for rule in HOLIDAY_RULES)


def is_holiday(day: Column) -> Column:
    """True where ``day`` (a date column) is a US federal holiday."""
    month = F.month(day)
    dom = F.dayofmonth(day)
    iso_wd = (F.dayofweek(day) + 5) % 7 + 1  # Spark: 1 = Sunday; ISO: 1 = Monday
    conds = []
    for r in HOLIDAY_RULES:
        if r.kind == "fixed":
            conds.append((month == r.month) & (dom == r.day))
        elif r.kind == "nth":
            conds.append((month == r.month) & (iso_wd == r.weekday) & (F.floor((dom - 1) / 7) == r.n - 1))
        else:
            conds.append(
                (month == r.month) & (iso_wd == r.weekday) & (dom > F.dayofmonth(F.last_day(day)) - 7)
            )
    return reduce(lambda a, b: a | b, conds)


def add_calendar_features(df: DataFrame, week_col: str = "week_start") -> DataFrame:
    """Adds, for the Monday-to-Sunday week starting at ``week_col``:

    ``week_of_year`` (ISO week, 1-53), ``month`` (of the Monday, 1-12),
    ``holiday_week`` (1 if a US federal holiday falls in the week),
    ``month_end_week`` / ``quarter_end_week`` (1 if the last day of a month /
    quarter falls in the week). Indicators are 0/1 integers."""
    ws = F.col(week_col)
    next_week = F.date_add(ws, 7)
    return df.select(
        "*",
        F.weekofyear(ws).alias("week_of_year"),
        F.month(ws).alias("month"),
        F.exists(F.sequence(ws, F.date_add(ws, 6)), is_holiday).cast("int").alias("holiday_week"),
        (F.month(next_week) != F.month(ws)).cast("int").alias("month_end_week"),
        (F.quarter(next_week) != F.quarter(ws)).cast("int").alias("quarter_end_week"),
    )
