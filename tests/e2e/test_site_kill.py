"""The drill "the site server is SIGKILLed after the central stored a batch but before the reply
reached it": a loopback relay between a site `vigil server` (SQLite, VIGIL_UPSTREAM/VIGIL_SITE) and
the central `vigil server` (PostgreSQL) forwards the site's `proxy data` and swallows the central's
`success`. The site is SIGKILLed and restarted; the restarted site resends the in-flight batch under
its old session and ids, so the central stores every value once."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import VigilServer, wait_until
from tests.e2e.test_site_servers import SITE, central, owners, rows, send  # noqa: F401 (central: a fixture)
from tests.e2e.test_vigil_proxy_kill import SwallowingRelay


@pytest.fixture
def relay(central: VigilServer) -> Iterator[SwallowingRelay]:  # noqa: F811
    with SwallowingRelay(central.port) as r:
        yield r


def test_site_killed_before_the_centrals_reply_forwards_every_value_once(
        tmp_path: Path, central: VigilServer, relay: SwallowingRelay) -> None:  # noqa: F811
    (tmp_path / "site").mkdir()
    site = VigilServer(tmp_path / "site", f"sqlite:///{tmp_path / 'site' / 'vigil.db'}",
                       VIGIL_UPSTREAM=f"127.0.0.1:{relay.port}", VIGIL_SITE="paris", VIGIL_TIMEOUT="10")
    try:
        site.start()
        site.import_yaml(SITE)
        site.wait_for_config("web1")
        wait_until(lambda: owners(central, "web1") is not None, 20, "web1 to be registered on the central")
        base = int(time.time()) - 300
        relay.armed = True
        first = [f"web1 temp {base + i} {i}.5" for i in range(40)]
        assert "processed: 40; failed: 0" in send(site, first, tmp_path)
        assert relay.swallowed.wait(30), "no proxy data with history went through the relay"
        wait_until(lambda: len(rows(central, "web1", "temp")) == 40, 20, "the central to store the batch")
        site.kill()  # the central stored the batch; the site never saw it acknowledged
        site.start()
        site.wait_for_config("web1")
        more = [f"web1 temp {base + 100 + i} {100 + i}" for i in range(5)]
        assert "processed: 5; failed: 0" in send(site, more, tmp_path)
        wait_until(lambda: len(rows(central, "web1", "temp")) >= 45, 30, "the values sent after the restart")
        time.sleep(2)  # two more forwarding passes: nothing else may arrive
        there = rows(central, "web1", "temp")
        assert [k for k, n in Counter(there).items() if n > 1] == []
        assert sorted(there) == sorted(rows(site, "web1", "temp"))
        assert len(there) == 45
        assert "resending 40 records of session" in site.log_text()
    finally:
        site.stop()
