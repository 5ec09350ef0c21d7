"""Prometheus items: an HTTP agent item scrapes an exporter's text exposition, dependent items pick
series out of it with the "Prometheus pattern" step (vigil.server.preprocessing.prometheus), as
Zabbix 6.0 does it (it has no Prometheus item type of its own).

The scrape is the master: one request per interval whatever the number of series taken from it,
and the scrape text is parsed once for all its dependent items. `scrape_items` writes that set of
items as configuration documents (for templates and `vigil config import`); `check_exposition`
is what the master's value must look like for the patterns to find anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ACCEPT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"  # the text format; exporters that speak only it ignore the rest


def scrape_items(master_key: str, url: str, series: Mapping[str, str | tuple[str, str, str]],
                 delay: str = "1m", value_type: str = "float") -> list[dict[str, Any]]:
    """A scrape item of `url` and one dependent item per `series` entry: key -> a pattern such as
    `node_load1` or `node_filesystem_avail_bytes{mountpoint="/"}`, or (pattern, request, argument)
    with request value, label (argument: the label's name) or function (argument: sum, min, max,
    avg, count)."""
    items: list[dict[str, Any]] = [{
        "key": master_key, "type": "http_agent", "value_type": "text", "url": url, "delay": delay,
        "headers": [{"name": "Accept", "value": ACCEPT}], "history": "1h", "trends": "0",
    }]
    for key, spec in series.items():
        pattern, request, argument = (spec, "value", "") if isinstance(spec, str) else spec
        items.append({
            "key": key, "type": "dependent", "master_item": master_key,
            "value_type": "char" if request == "label" else value_type,
            "preprocessing": [{"type": "prometheus_pattern", "params": [pattern, request, argument]}],
        })
    return items


def check_exposition(text: str) -> None:
    """Raise ValueError naming the line when `text` is not Prometheus text exposition."""
    from vigil.server.preprocessing import prometheus

    prometheus.parse(text)
