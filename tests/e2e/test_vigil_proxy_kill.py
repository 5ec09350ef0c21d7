"""The drill "the proxy is SIGKILLed after the server stored a batch but before the reply reached it":
a loopback relay between `vigil proxy` and `vigil server` (both real processes, both stores) forwards
`proxy data` to the server and swallows the server's reply (active: the `success` answer; passive:
the server's acknowledgement). The proxy is then SIGKILLed and restarted; every value is stored once,
because the restarted proxy resends the in-flight batch under its old session and ids."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from vigil.agent.protocol import zbxd

from tests.conftest import VigilServer, free_port, wait_until
from tests.e2e.test_vigil_proxy import CONFIG, send, server_rows, wait_drained
from tests.vigil_proxy import VigilProxy


class SwallowingRelay:
    """Listens on `port` and forwards each connection's frames to 127.0.0.1:`target`, frame by frame
    in turn (the first frame from the connecting side). While `armed`, a frame from the connecting
    side's peer that follows a `proxy data` carrying history is not passed on: it is swallowed, the
    connection is held open, and `swallowed` is set."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self.armed = False
        self.swallowed = threading.Event()
        self._sock = socket.create_server(("127.0.0.1", self.port))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> SwallowingRelay:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self._sock.close()
        for s in self._held:
            s.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _relay(self, a: socket.socket) -> None:
        try:
            b = socket.create_connection(("127.0.0.1", self.target), timeout=30)
        except OSError:
            a.close()
            return
        a.settimeout(30)
        sides, turn, history = (a, b), 0, False
        try:
            while not self._stop.is_set():
                src, dst = sides[turn], sides[1 - turn]
                try:
                    _, body = zbxd.recv_frame(src, 1 << 30)
                except (EOFError, OSError, zbxd.FrameError):
                    break
                if history and self.armed:
                    self.armed = False
                    self._held += [a, b]
                    self.swallowed.set()
                    return
                try:
                    obj = json.loads(body)
                except ValueError:
                    obj = None
                history = isinstance(obj, dict) and bool(obj.get("history data"))
                dst.sendall(zbxd.encode(body, compress=True))
                turn = 1 - turn
        except OSError:
            pass
        a.close()
        b.close()


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[VigilServer]:
    s = VigilServer(tmp_path, database_url, VIGIL_PROXY_POLL_INTERVAL="1", VIGIL_PROXY_CONFIG_FREQUENCY="2")
    s.start()
    try:
        yield s
    finally:
        s.stop()


@pytest.mark.parametrize("mode", ["active", "passive"])
def test_proxy_killed_before_the_servers_reply_resends_under_its_old_session_stored_once(
        tmp_path: Path, server: VigilServer, mode: str) -> None:
    name = f"vp-kill-{mode}"
    base = int(time.time()) - 300
    if mode == "active":
        relay = SwallowingRelay(server.port)
        proxy = VigilProxy(tmp_path, name, server=f"127.0.0.1:{relay.port}", StartPollers="0", Timeout="10")
        address = ""
    else:
        proxy = VigilProxy(tmp_path, name, server="127.0.0.1", passive=True, StartPollers="0", Timeout="10")
        relay = SwallowingRelay(proxy.port)
        address = f', address: "127.0.0.1:{relay.port}"'
    with relay:
        server.import_yaml(CONFIG % {"name": name, "mode": mode, "agent_port": free_port(), "address": address})
        try:
            proxy.start()
            proxy.wait_for_host("far1")
            relay.armed = True
            lines = [f"far1 trap.a {base + i} {i} {i}" for i in range(40)]
            out = send(proxy.port, lines, tmp_path)
            assert "processed: 40; failed: 0" in out, out
            assert relay.swallowed.wait(60), "no proxy data with history went through the relay"
            wait_until(lambda: len(server_rows(server, "trap.a")) == 40, 30, "the server to store the batch")
            proxy.kill()  # the server stored the batch; the proxy never saw it acknowledged
            assert sum(1 for r in proxy.outbox() if not r[4]) == 40
            proxy.start()
            wait_drained(proxy)
            more = [f"far1 trap.a {base + 100 + i} {i} {100 + i}" for i in range(5)]
            assert "processed: 5; failed: 0" in send(proxy.port, more, tmp_path)
            wait_until(lambda: len(server_rows(server, "trap.a")) >= 45, 30, "the values sent after the restart")
            wait_drained(proxy)
            time.sleep(1.5)  # one more DataSenderFrequency: nothing else may arrive
            stored = server_rows(server, "trap.a")
            assert [k for k, n in Counter(stored).items() if n > 1] == []
            assert sorted(stored) == sorted([(base + i, i, str(i)) for i in range(40)]
                                            + [(base + 100 + i, i, str(100 + i)) for i in range(5)])
            assert "resending 40 records of session" in proxy.log_text()
        finally:
            proxy.stop()
