"""Prometheus items: the real node_exporter scraped by an HTTP agent item, series taken out of the
scrape by dependent items with the Prometheus pattern step."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from vigil.server.config.repo import ConfigRepo
from vigil.server.pollers.prometheus import check_exposition, scrape_items
from vigil.server.pollers.scheduler import Scheduler
from vigil.server.store.base import WriteBatch

from tests.conftest import free_port, require, stop_process, wait_port
from tests.server.pollers.test_scheduler import FAST, _collect, _import, _run_until, _state, _values, repo  # noqa: F401


@pytest.fixture
def node_exporter(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A real prometheus-node-exporter on loopback with a textfile collector directory."""
    binary = require("prometheus-node-exporter")
    port = free_port()
    textfile = tmp_path / "textfile"
    textfile.mkdir()
    (textfile / "vigil.prom").write_text("vigil_test_value 42\nvigil_test_labels{disk=\"sda\",state=\"ok\"} 1\n")
    proc = subprocess.Popen([binary, f"--web.listen-address=127.0.0.1:{port}",
                             f"--collector.textfile.directory={textfile}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, 15, proc)
        yield port, textfile
    finally:
        stop_process(proc)


def test_dependent_items_take_series_out_of_one_scrape(repo: ConfigRepo,  # noqa: F811
                                                       node_exporter: tuple[int, Path]) -> None:
    port, textfile = node_exporter
    items = scrape_items("node.scrape", f"http://127.0.0.1:{port}/metrics", {
        "test.value": "vigil_test_value",
        "test.state": ('vigil_test_labels{disk="sda"}', "label", "state"),
        "load1": "node_load1",
        "cpu.count": ('node_cpu_seconds_total{mode="idle"}', "function", "count"),
        "nothing": "no_such_metric_anywhere",
    }, delay="1s")
    doc = {"hosts": [{"host": "node", "items": items}]}
    ids = _import(repo, yaml.safe_dump(doc))
    batches: list[WriteBatch] = []
    sched = Scheduler(repo, _collect(batches), FAST)

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(sched.run(stop))
        try:
            for _ in range(200):
                if _values(batches, ids["test.value"]) and _values(batches, ids["cpu.count"]):
                    break
                await asyncio.sleep(0.05)
            (textfile / "vigil.prom").write_text('vigil_test_value 43.5\nvigil_test_labels{disk="sda",state="bad"} 1\n')
            for _ in range(200):
                if 43.5 in _values(batches, ids["test.value"]) and _state(repo, ids["nothing"]):
                    break
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await task

    asyncio.run(main())
    assert _values(batches, ids["test.value"])[0] == 42.0 and 43.5 in _values(batches, ids["test.value"])
    assert {"ok", "bad"} <= set(_values(batches, ids["test.state"]))
    assert _values(batches, ids["load1"]) and all(v >= 0 for v in _values(batches, ids["load1"]))
    assert set(_values(batches, ids["cpu.count"])) == {float(len(open("/proc/stat").read().split("\ncpu")) - 1)}
    scrape = _values(batches, ids["node.scrape"])[0]
    check_exposition(scrape)
    assert "# TYPE node_load1 gauge" in scrape
    state, error = _state(repo, ids["nothing"])  # type: ignore[misc]
    assert (state, error) == (1, "step 1 (Prometheus pattern): no data matches the pattern")


def test_a_page_that_is_not_exposition_text_is_named() -> None:
    with pytest.raises(ValueError, match="line 1"):
        check_exposition("<html><body>hello</body></html>\n")
