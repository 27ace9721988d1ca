"""Small inline-SVG charts for the report: line, grouped bar and scatter.

Hand-written on purpose: the page must open from a file with no network and no
JavaScript, and plotting libraries would add a heavy dependency for four chart
types. Every text that reaches the SVG goes through ``html.escape``; values
that are ``None`` or not finite are left out (a gap in a line, no bar, no dot).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence

WIDTH = 760
HEIGHT = 300
MARGIN_LEFT = 64
MARGIN_RIGHT = 16
MARGIN_TOP = 34
MARGIN_BOTTOM = 62
PALETTE = ("#1f4e9c", "#d1495b", "#2a9d8f", "#e9a03b", "#7b4fa3", "#6c757d", "#8c564b", "#17becf")
ACTUAL_COLOR = "#111111"

Number = float | int | None


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def finite(v: Number) -> bool:
    return v is not None and isinstance(v, int | float) and math.isfinite(v)


def fmt(v: Number, digits: int = 3) -> str:
    """A number for people: thousands separators for large values, ``digits``
    significant digits otherwise; an em dash for missing values."""
    if not finite(v):
        return "—"
    assert v is not None
    x = float(v)
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if x == int(x) and abs(x) < 1000 and isinstance(v, int):
        return str(int(x))
    return f"{x:.{digits}g}"


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering ``lo``..``hi``."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = mag
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        step = m * mag
        if (hi - lo) / step <= n:
            break
    start = math.floor(lo / step + 1e-9) * step
    stop = math.ceil(hi / step - 1e-9) * step
    count = int(round((stop - start) / step))
    return [round(start + i * step, 12) for i in range(count + 1)]


class _Frame:
    """Plot area and the value -> pixel mapping of one chart."""

    def __init__(self, y_lo: float, y_hi: float, width: int = WIDTH, height: int = HEIGHT):
        self.width, self.height = width, height
        self.x0, self.x1 = MARGIN_LEFT, width - MARGIN_RIGHT
        self.y0, self.y1 = height - MARGIN_BOTTOM, MARGIN_TOP  # y0 bottom, y1 top
        self.ticks = nice_ticks(y_lo, y_hi)
        self.lo, self.hi = self.ticks[0], self.ticks[-1]

    def y(self, v: float) -> float:
        return self.y0 - (v - self.lo) / (self.hi - self.lo) * (self.y0 - self.y1)

    def y_axis(self, label: str) -> list[str]:
        out = []
        for t in self.ticks:
            yy = self.y(t)
            out.append(
                f'<line x1="{self.x0}" x2="{self.x1}" y1="{yy:.1f}" y2="{yy:.1f}" class="grid"/>'
                f'<text x="{self.x0 - 6}" y="{yy + 4:.1f}" text-anchor="end" class="tick">'
                f"{esc(fmt(t))}</text>"
            )
        if self.lo < 0 < self.hi:
            yy = self.y(0)
            out.append(f'<line x1="{self.x0}" x2="{self.x1}" y1="{yy:.1f}" y2="{yy:.1f}" class="zero"/>')
        mid = (self.y0 + self.y1) / 2
        out.append(
            f'<text x="14" y="{mid:.1f}" transform="rotate(-90 14 {mid:.1f})" text-anchor="middle"'
            f' class="axis-label">{esc(label)}</text>'
        )
        return out


def _svg(title: str, body: list[str], width: int = WIDTH, height: int = HEIGHT) -> str:
    return (
        # no xmlns: inline SVG in HTML5 needs none, and the page names no URL at all
        f'<svg viewBox="0 0 {width} {height}" width="100%"'
        f' role="img" aria-label="{esc(title)}" class="chart">'
        f"<title>{esc(title)}</title>"
        f'<text x="{width / 2:.0f}" y="18" text-anchor="middle" class="chart-title">{esc(title)}</text>'
        + "".join(body)
        + "</svg>"
    )


def _legend(
    names: Sequence[str], colors: Sequence[str], width: int, y: float, dashed: Sequence[bool]
) -> list[str]:
    out = []
    longest = max((len(n) for n in names), default=0)
    step = min(34 + 6.5 * longest, (width - MARGIN_LEFT) / max(len(names), 1))
    for i, (name, color) in enumerate(zip(names, colors, strict=True)):
        x = MARGIN_LEFT + i * step
        dash = ' stroke-dasharray="5 3"' if dashed[i] else ""
        out.append(
            f'<line x1="{x:.1f}" x2="{x + 18:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="{color}"'
            f' stroke-width="3"{dash}/>'
            f'<text x="{x + 22:.1f}" y="{y + 4:.1f}" class="legend">{esc(name)}</text>'
        )
    return out


def _range(values: Sequence[Sequence[Number]], include_zero: bool) -> tuple[float, float]:
    flat = [float(v) for vs in values for v in vs if finite(v)]  # type: ignore[arg-type]
    if not flat:
        return (0.0, 1.0)
    lo, hi = min(flat), max(flat)
    if include_zero:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    return lo, hi


def line_chart(
    title: str,
    x_labels: Sequence[str],
    series: Mapping[str, Sequence[Number]],
    *,
    y_label: str = "",
    colors: Mapping[str, str] | None = None,
    dashed: Sequence[str] = (),
    bands: Sequence[tuple[int, int, str]] = (),
) -> str:
    """One line per series over the categorical x axis ``x_labels`` (e.g.
    weeks); ``bands`` shade index ranges (inclusive) with a label (e.g. folds)."""
    n = len(x_labels)
    frame = _Frame(*_range(list(series.values()), include_zero=True))
    span = frame.x1 - frame.x0

    def x(i: float) -> float:
        return frame.x0 + (i / max(n - 1, 1)) * span

    body: list[str] = []
    for k, (i0, i1, label) in enumerate(bands):
        xa, xb = x(i0 - 0.5 if i0 > 0 else 0), x(i1 + 0.5 if i1 < n - 1 else n - 1)
        body.append(
            f'<rect x="{xa:.1f}" y="{frame.y1}" width="{max(xb - xa, 1):.1f}" height="{frame.y0 - frame.y1}"'
            f' class="band{k % 2}"/>'
            f'<text x="{(xa + xb) / 2:.1f}" y="{frame.y1 + 12}" text-anchor="middle" class="band-label">'
            f"{esc(label)}</text>"
        )
    body += frame.y_axis(y_label)
    every = max(1, math.ceil(n / 8))
    for i in range(0, n, every):
        body.append(
            f'<text x="{x(i):.1f}" y="{frame.y0 + 16}" text-anchor="middle" class="tick">'
            f"{esc(x_labels[i])}</text>"
        )
    names = list(series)
    palette = iter(PALETTE)
    cols = [(colors or {}).get(name) or next(palette) for name in names]
    for name, color in zip(names, cols, strict=True):
        values = series[name]
        runs: list[list[str]] = [[]]
        for i, v in enumerate(values):
            if finite(v):
                runs[-1].append(f"{x(i):.1f},{frame.y(float(v)):.1f}")  # type: ignore[arg-type]
            elif runs[-1]:
                runs.append([])
        dash = ' stroke-dasharray="5 3"' if name in dashed else ""
        for run in runs:
            if len(run) == 1:
                cx, cy = run[0].split(",")
                body.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{color}"/>')
            elif run:
                body.append(
                    f'<polyline points="{" ".join(run)}" fill="none" stroke="{color}"'
                    f' stroke-width="2"{dash}><title>{esc(name)}</title></polyline>'
                )
    body += _legend(names, cols, frame.width, frame.height - 18, [n in dashed for n in names])
    return _svg(title, body)


def bar_chart(
    title: str,
    categories: Sequence[str],
    series: Mapping[str, Sequence[Number]],
    *,
    y_label: str = "",
    colors: Mapping[str, str] | None = None,
) -> str:
    """Grouped vertical bars: one group per category, one bar per series;
    negative values hang below the zero line."""
    frame = _Frame(*_range(list(series.values()), include_zero=True))
    names = list(series)
    palette = iter(PALETTE)
    cols = [(colors or {}).get(name) or next(palette) for name in names]
    n = max(len(categories), 1)
    group = (frame.x1 - frame.x0) / n
    bar = group * 0.8 / max(len(names), 1)
    body = frame.y_axis(y_label)
    zero = frame.y(0.0) if frame.lo <= 0 <= frame.hi else frame.y0
    for c, cat in enumerate(categories):
        gx = frame.x0 + c * group + group * 0.1
        for s, (name, color) in enumerate(zip(names, cols, strict=True)):
            vals = series[name]
            v = vals[c] if c < len(vals) else None
            if not finite(v):
                continue
            yy = frame.y(float(v))  # type: ignore[arg-type]
            top, h = min(yy, zero), abs(zero - yy)
            body.append(
                f'<rect x="{gx + s * bar:.1f}" y="{top:.1f}" width="{max(bar - 1, 1):.1f}"'
                f' height="{max(h, 0.5):.1f}"'
                f' fill="{color}"><title>{esc(name)} · {esc(cat)}: {esc(fmt(v))}</title></rect>'
            )
        label = cat if len(cat) <= 18 else cat[:17] + "…"
        body.append(
            f'<text x="{frame.x0 + (c + 0.5) * group:.1f}" y="{frame.y0 + 16}" text-anchor="middle"'
            f' class="tick">{esc(label)}</text>'
        )
    body += _legend(names, cols, frame.width, frame.height - 18, [False] * len(names))
    return _svg(title, body)


def scatter_chart(
    title: str,
    xs: Sequence[Number],
    ys: Sequence[Number],
    *,
    x_label: str = "",
    y_label: str = "",
    diagonal: bool = True,
    max_points: int = 1500,
) -> str:
    """Points (x, y) with a y = x line; at most ``max_points`` (evenly thinned).
    With more than 50 points the axes span the 1st to 99th percentile of all
    values, and the few points beyond are drawn on the edge (the title says so)."""
    pts = [(float(a), float(b)) for a, b in zip(xs, ys, strict=True) if finite(a) and finite(b)]  # type: ignore[arg-type]
    if len(pts) > max_points:
        step = len(pts) / max_points
        pts = [pts[int(i * step)] for i in range(max_points)]
    lo, hi = _range([[p[0] for p in pts], [p[1] for p in pts]], include_zero=True)
    if len(pts) > 50:
        values = sorted(v for p in pts for v in p)
        q_lo, q_hi = values[int(0.01 * (len(values) - 1))], values[int(0.99 * (len(values) - 1))]
        if q_lo > lo or q_hi < hi:
            lo, hi = min(q_lo, 0.0), max(q_hi, 0.0)
            pts = [(min(max(a, lo), hi), min(max(b, lo), hi)) for a, b in pts]
            title += " (axes clipped to the 1st-99th percentile)"
    frame = _Frame(lo, hi)
    xt = frame.ticks  # same scale on both axes: the diagonal is the 45-degree line
    span = frame.x1 - frame.x0

    def x(v: float) -> float:
        return frame.x0 + (v - xt[0]) / (xt[-1] - xt[0]) * span

    body = frame.y_axis(y_label)
    for t in xt:
        body.append(
            f'<text x="{x(t):.1f}" y="{frame.y0 + 16}" text-anchor="middle" class="tick">{esc(fmt(t))}</text>'
        )
    body.append(
        f'<text x="{(frame.x0 + frame.x1) / 2:.1f}" y="{frame.y0 + 34}" text-anchor="middle"'
        f' class="axis-label">{esc(x_label)}</text>'
    )
    if diagonal:
        body.append(
            f'<line x1="{x(xt[0]):.1f}" y1="{frame.y(xt[0]):.1f}"'
            f' x2="{x(xt[-1]):.1f}" y2="{frame.y(xt[-1]):.1f}"'
            ' class="diagonal"/>'
        )
    if xt[0] < 0 < xt[-1]:
        body.append(f'<line x1="{x(0):.1f}" x2="{x(0):.1f}" y1="{frame.y0}" y2="{frame.y1}" class="zero"/>')
    body += [f'<circle cx="{x(a):.1f}" cy="{frame.y(b):.1f}" r="2" class="dot"/>' for a, b in pts]
    return _svg(title, body)
