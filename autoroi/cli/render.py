"""Terminal output for the CLI: rich tables and progress."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.table import Table

# wide enough for the report tables when output goes to a file or CI log
console = Console(stderr=False, width=None if sys.stdout.isatty() else 140)


@contextmanager
def progress_bar() -> Iterator[Any]:
    """A per-table rows and rows/s display for long loads; silent when output
    is not a terminal (CI, pipelines), where the log lines say the same."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        TextColumn("{task.completed:,.0f} rows"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as prog:
        tasks: dict[str, tuple[Any, float]] = {}

        def update(table: str, rows: int) -> None:
            if table not in tasks:
                tasks[table] = (prog.add_task(table, total=None, rate=""), time.perf_counter())
            task_id, t0 = tasks[table]
            rate = rows / max(time.perf_counter() - t0, 1e-9)
            prog.update(task_id, completed=rows, rate=f"{rate:,.0f} rows/s")

        yield update


def replication_table(report: Any) -> None:
    table = Table(title=f"replication {report.source} -> {report.lake} ({report.seconds:.1f}s)")
    for col in ("table", "status"):
        table.add_column(col)
    for col in ("rows", "inserted", "updated", "deleted"):
        table.add_column(col, justify="right")
    table.add_column("deletes via")
    for col in ("seconds", "rows/s"):
        table.add_column(col, justify="right")
    table.add_column("note")
    for t in report.tables:
        table.add_row(
            t.table,
            t.status,
            f"{t.rows:,}",
            f"{t.inserted:,}",
            f"{t.updated:,}",
            f"{t.deleted:,}",
            getattr(t, "deletes", "") or "",
            f"{t.seconds:.2f}",
            f"{t.rows_per_second:,.0f}",
            t.message[:80],
        )
    console.print(table)


def counts_table(title: str, rows: dict[str, int]) -> None:
    table = Table(title=title)
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, n in rows.items():
        table.add_row(name, f"{n:,}")
    console.print(table)


def mutation_table(report: Any) -> None:
    """Whatever shape the mutation report has: batches of per-table counts."""
    table = Table(title="mutations")
    for col in ("batch", "table", "inserted", "updated", "deleted"):
        table.add_column(col, justify="left" if col == "table" else "right")
    for i, batch in enumerate(getattr(report, "batches", []), start=1):
        for name, c in _per_table(batch).items():
            table.add_row(
                str(i),
                name,
                f"{c.get('inserted', 0):,}",
                f"{c.get('updated', 0):,}",
                f"{c.get('deleted', 0):,}",
            )
        for col in getattr(batch, "added_columns", []) or []:
            table.add_row(str(i), str(col), "new column", "", "")
    console.print(table)


def _per_table(batch: Any) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for kind in ("inserted", "updated", "deleted"):
        for name, n in (getattr(batch, kind, None) or {}).items():
            out.setdefault(name, {})[kind] = n
    return out


def ingest_result(out: dict[str, Any], lake_uri: str) -> None:
    """What an ``ingest`` run did: replication per table, then the master table."""
    from autoroi.lake.master import MasterStore
    from autoroi.lake.storage import open_lake
    from autoroi.replication.replicate import report_from_dict

    replication_table(report_from_dict(out["replication"]))
    version, changed = out.get("master_version"), out.get("master_changed")
    manifest = MasterStore(open_lake(lake_uri)).manifest(str(version)) or {}
    anonymity = manifest.get("anonymity", {})
    table = Table(title="master table")
    table.add_column("version")
    table.add_column("latest moved")
    table.add_column("rows", justify="right")
    table.add_column("k", justify="right")
    table.add_column("k-anonymity")
    table.add_row(
        str(version),
        "yes" if changed else "no (same content)",
        f"{manifest.get('rows', 0):,}",
        str(manifest.get("k", "")),
        _anonymity_line(anonymity),
    )
    console.print(table)


def train_result(out: dict[str, Any], lake_uri: str) -> None:
    """What a ``train`` run registered: version, status, gates, report, and
    the command a reviewer runs next. ``out`` without a version (train nested
    in ingest) means the newest version trained on ``out["master_version"]``."""
    from autoroi.lake.storage import open_lake
    from autoroi.notify import ReviewNotice
    from autoroi.registry import get_version, list_versions

    lake = open_lake(lake_uri)
    if out.get("version"):
        mv = get_version(lake, str(out["version"]))
    else:
        trained = [v for v in list_versions(lake) if v.master_version == out.get("master_version")]
        if not trained:
            console.print(
                f"[red]no model version was registered for master {out.get('master_version')}[/red]"
            )
            return
        mv = max(trained, key=lambda v: v.created_at)
    notice = ReviewNotice.from_version(mv, lake_uri=lake_uri)
    table = Table(title="model version")
    for col in ("version", "status", "master table", "gates", "units WAPE", "ROI MAE", "ROI Spearman"):
        table.add_column(col)
    m = mv.metrics

    def num(key: str) -> str:
        v = m.get(key)
        return f"{v:.3f}" if isinstance(v, int | float) else "—"

    table.add_row(
        mv.version,
        mv.status,
        str(mv.master_version),
        "passed" if notice.gate_passed else "FAILED",
        num("wape"),
        num("roi_mae"),
        num("roi_spearman"),
    )
    console.print(table)
    for reason in notice.reasons:
        console.print(f"  [red]gate:[/red] {reason}")
    console.print(f"report: {mv.report_location}")
    console.print(f"{'approve anyway' if notice.override_needed else 'approve'}: {notice.approve_command}")


def _anonymity_line(a: dict[str, Any]) -> str:
    """Fine (region x model) cell-weeks below k: merged into coarser cells, or suppressed."""
    if not a:
        return ""
    return (
        f"{a.get('merged_fine_cells', 0):,} fine cell-weeks merged into"
        f" {a.get('merged_rows', 0):,} coarser rows ({a.get('merged_units', 0):,} units);"
        f" {a.get('suppressed_fine_cells', 0):,} suppressed"
        f" ({a.get('suppressed_units', 0):,} units)"
    )


def roi_table(predictions: list[dict[str, Any]], title: str) -> Any:
    """Served answers as a table that leads with what an analyst reads first:
    the ROI, its 90 % interval and the chance it pays back (``P>0``); then the cell
    (``*``: answered from the coarser cell k-anonymity merged it into, named
    below the table), the week, the incentive and its cost. Fits 100 columns;
    ``--json`` has every field."""
    from rich.table import Table

    def num(v: Any, fmt: str) -> str:
        return "—" if v is None else format(v, fmt)

    table = Table(title=title, box=None, padding=(0, 1), pad_edge=False, header_style="bold underline")
    for name, right in (
        ("ROI", True),
        ("90% interval", True),
        ("P>0", True),
        ("region/model", False),
        ("week", False),
        ("incentive", False),
        ("$/unit", True),
        ("cost $k", True),
    ):
        table.add_column(name, justify="right" if right else "left", no_wrap=True)
    coarse: dict[str, str] = {}
    for p in predictions:
        lo, hi = p.get("roi_lower"), p.get("roi_upper")
        interval = "—" if lo is None or hi is None else f"{lo:+.2f}..{hi:+.2f}"
        cell = f"{p.get('region')}/{p.get('vehicle_model')}"
        ctx = (p.get("context_region"), p.get("context_vehicle_model"))
        if ctx[0] and ctx != (p.get("region"), p.get("vehicle_model")):
            coarse[cell] = f"{ctx[0]}/{ctx[1]}"
            cell += "*"
        prob = p.get("prob_pays_back")
        table.add_row(
            num(p.get("roi"), "+.2f"),
            interval,
            "—" if prob is None else f"{prob:.0%}",
            cell,
            str(p.get("week_start")),
            str(p.get("incentive_type")),
            num(p.get("incentive_amount"), ",.0f"),
            "—" if p.get("incentive_cost") is None else f"{p['incentive_cost'] / 1000:,.1f}",
        )
    if coarse:
        named = "; ".join(f"{k} <- {v}" for k, v in coarse.items())
        table.caption = f"* answered from the coarser cell: {named}"
    return table


def amounts_table(decisions: list[dict[str, Any]], title: str) -> Any:
    """``autoroi.decisions.amount_decisions`` per scenario: where the incentive
    stops paying back, the most profitable amount (its profit and ROI), and the
    largest amount that pays back with the chosen confidence. Fits 100 columns."""
    from rich.table import Table

    table = Table(title=title, box=None, padding=(0, 1), pad_edge=False, header_style="bold underline")
    for name, right in (
        ("region/model", False),
        ("week", False),
        ("incentive", False),
        ("break-even", True),
        ("best $/unit", True),
        ("profit $k", True),
        ("ROI", True),
        ("safe $/unit", True),
    ):
        table.add_column(name, justify="right" if right else "left", no_wrap=True)
    for d in decisions:
        s = d["scenario"]
        be = d["break_even"]
        if be["kind"] == "crossing":
            even = f"{be['amount']:,.0f}"
        else:
            even = "none pays" if be["kind"] == "none" else "> grid"
        best, safe = d["best_profit"], d["safe"]
        table.add_row(
            f"{s.get('region')}/{s.get('vehicle_model')}",
            str(s.get("week_start")),
            str(s.get("incentive_type")),
            even,
            "none pays" if best is None else f"{best['amount']:,.0f}",
            "—" if best is None else f"{best['incremental_profit'] / 1000:,.1f}",
            "—" if best is None else f"{best['roi']:+.2f}",
            "none" if safe is None else f"{safe['amount']:,.0f}",
        )
    return table
