"""Plotly figures as plain dicts, pure: the page hands them to plotly.js as JSON.

Short ranges plot history; long ones hourly trends (average line with a min–max band), chosen by
`use_trends`, as Zabbix does.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from vigil.server.store.base import Trend

HISTORY_MAX_RANGE = 2 * 86400  # longer ranges read trends
PALETTE = ["#1f77b4", "#e8710a", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


_THRESHOLD = re.compile(r"^\s*(?:last|avg|min|max)\(/(?P<host>[^/]+)/(?P<key>.+?)(?:,[^()]*)?\)\s*"
                        r"(?:>=|<=|>|<|=)\s*(?P<value>-?\d+(?:\.\d+)?)\s*$")


def threshold(expression: str, host: str, key: str) -> float | None:
    """The constant a simple trigger (`last(/host/key)>5`, avg/min/max alike) compares the item with;
    None for any other expression."""
    m = _THRESHOLD.match(expression)
    if m and m.group("host") == host and m.group("key") == key:
        return float(m.group("value"))
    return None


def use_trends(start: int, end: int) -> bool:
    return end - start > HISTORY_MAX_RANGE


@dataclass
class Series:
    itemid: int
    label: str
    units: str
    points: Sequence[tuple[int, float]] = ()  # (clock, value) from history
    trends: Sequence[Trend] = ()
    thresholds: Sequence[tuple[str, float]] = field(default_factory=list)  # (trigger name, value)


def _stats(values: Sequence[float]) -> str:
    if not values:
        return "no data"
    from vigil.web.format import significant

    return (f"last {significant(values[-1])} · min {significant(min(values))} · "
            f"avg {significant(sum(values) / len(values))} · max {significant(max(values))}")


def figure(series: Sequence[Series], start: int, end: int, *, height: int = 360, compact: bool = False) -> dict:
    traces: list[dict] = []
    units = sorted({s.units for s in series})
    for i, s in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        axis = "y2" if len(units) == 2 and s.units == units[1] else "y"
        if s.trends:
            xs = [t.clock * 1000 for t in s.trends]
            avg = [t.avg for t in s.trends]
            traces.append({"type": "scatter", "mode": "lines", "x": xs, "y": [t.max for t in s.trends],
                           "line": {"width": 0}, "hoverinfo": "skip", "showlegend": False, "yaxis": axis,
                           "legendgroup": str(s.itemid)})
            traces.append({"type": "scatter", "mode": "lines", "x": xs, "y": [t.min for t in s.trends],
                           "fill": "tonexty", "fillcolor": color + "33", "line": {"width": 0}, "hoverinfo": "skip",
                           "showlegend": False, "yaxis": axis, "legendgroup": str(s.itemid)})
            traces.append({"type": "scatter", "mode": "lines", "name": f"{s.label} (avg) — {_stats(avg)}",
                           "x": xs, "y": avg, "line": {"color": color, "width": 1.5}, "yaxis": axis,
                           "legendgroup": str(s.itemid), "meta": s.units,
                           "hovertemplate": "%{y:.4~g} %{meta}<extra>" + _esc(s.label) + "</extra>"})
        else:
            ys = [v for _, v in s.points]
            traces.append({"type": "scatter", "mode": "lines+markers" if len(ys) < 60 else "lines",
                           "name": f"{s.label} — {_stats(ys)}", "x": [c * 1000 for c, _ in s.points], "y": ys,
                           "line": {"color": color, "width": 1.5}, "marker": {"size": 4}, "yaxis": axis,
                           "legendgroup": str(s.itemid), "meta": s.units,
                           "hovertemplate": "%{y:.4~g} %{meta}<extra>" + _esc(s.label) + "</extra>"})
        for name, value in s.thresholds:
            traces.append({"type": "scatter", "mode": "lines", "name": f"{name} ({value:g})",
                           "x": [start * 1000, end * 1000], "y": [value, value], "yaxis": axis,
                           "line": {"color": "#d62728", "dash": "dash", "width": 1}, "hoverinfo": "name"})
    layout: dict = {
        "height": height, "margin": {"l": 56, "r": 56 if len(units) == 2 else 16, "t": 8, "b": 32},
        "xaxis": {"type": "date", "range": [start * 1000, end * 1000], "showspikes": True, "spikemode": "across",
                  "spikethickness": 1, "spikedash": "dot", "spikecolor": "#888", "gridcolor": "#eef0f3"},
        "yaxis": {"title": {"text": units[0] if units else ""}, "gridcolor": "#eef0f3", "rangemode": "tozero",
                  "zeroline": False, "hoverformat": ".4~g", "automargin": True},
        "hovermode": "x unified", "showlegend": not compact,
        "legend": {"orientation": "h", "y": -0.15, "font": {"size": 11}},
        "paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "#ffffff", "font": {"size": 11},
    }
    if len(units) == 2:
        layout["yaxis2"] = {"title": {"text": units[1]}, "overlaying": "y", "side": "right", "rangemode": "tozero",
                            "showgrid": False}
    return {"data": traces, "layout": layout}


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
