"""Trigger engine benchmark: value -> problem event latency with many triggers, evaluations per second,
and problem -> webhook received latency through a real Celery worker on Redis.

    python bench/triggers.py [--quick] [--triggers 10000] [--database-url URL]

The server runs in this process (`serve` with a `notify` that records when each event was committed
and handed on), so the latency is from the moment the sender starts writing the value until the
engine has committed the problem event: ingest, the durable history write, evaluation and the event's
own commit. The real zabbix_server's history syncer wakes once a second (60–1,060 ms, median 530 ms
on this kind of machine). Evaluations per second are counted by the engine while senders push values
for every item. The webhook figure adds the escalator, the alert log and a `vigil worker` process
delivering to a local HTTP receiver.

Ends with one `name: value unit` line per figure.
"""

from __future__ import annotations

import argparse
import asyncio
import http.server
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vigil.agent.protocol import zbxd  # noqa: E402
from vigil.agent.protocol.messages import SenderData, SenderValue  # noqa: E402
from vigil.server.config.migrate import engine_for, upgrade  # noqa: E402
from vigil.server.config.model import doc_from_dict  # noqa: E402
from vigil.server.config.repo import ConfigRepo  # noqa: E402
from vigil.server.settings import Settings  # noqa: E402
from vigil.server.triggers.events import Event, Notice  # noqa: E402

ITEMS_PER_HOST = 100


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(p / 100 * len(xs)) - 1))]


def config(n_triggers: int, hook_port: int | None) -> dict[str, Any]:
    hosts = []
    for h in range((n_triggers + ITEMS_PER_HOST - 1) // ITEMS_PER_HOST):
        name = f"tb-{h}"
        k = range(h * ITEMS_PER_HOST, min(n_triggers, (h + 1) * ITEMS_PER_HOST))
        hosts.append({
            "host": name, "groups": ["Bench"],
            "items": [{"key": f"tb.v[{i}]", "type": "trapper", "value_type": "float"} for i in k],
            "triggers": [{"name": f"tb-{i} on {{HOST.NAME}}", "expression": f"last(/{name}/tb.v[{i}])>50",
                          "severity": "high"} for i in k],
        })
    doc: dict[str, Any] = {"hosts": hosts}
    if hook_port is not None:
        doc["media_types"] = [{"name": "tb-hook", "type": "webhook", "url": f"http://127.0.0.1:{hook_port}/hook",
                               "body": '{"event": "{EVENT.ID}", "status": "{EVENT.STATUS}"}'}]
        doc["users"] = [{"username": "tb-oncall", "medias": [{"media_type": "tb-hook", "send_to": "bench"}]}]
        doc["actions"] = [{"name": "tb-notify", "operations": [{"step_from": 1, "step_to": 1,
                                                                "send_to_users": ["tb-oncall"]}]}]
    return doc


def send(port: int, values: list[tuple[str, str, str]]) -> None:
    now = int(time.time())
    body = SenderData([SenderValue(h, k, v, now, 0) for h, k, v in values], now, 0).to_json()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(zbxd.encode(body))
        zbxd.recv_frame(s)


class Server:
    """`serve` in a thread of its own, with its own event loop."""

    def __init__(self, settings: Settings, notify: Callable[[Notice], None]) -> None:
        from vigil.server.ingest.server import serve

        self.loop = asyncio.new_event_loop()
        self.stop = asyncio.Event()
        self.ready = threading.Event()
        self.error: BaseException | None = None

        async def main() -> None:
            async def on_ready() -> None:
                self.ready.set()

            try:
                await serve(settings, self.stop, on_ready=on_ready, notify=notify)
            except BaseException as e:  # reported by the main thread
                self.error = e
                self.ready.set()

        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(main(),), daemon=True)
        self.thread.start()
        if not self.ready.wait(300) or self.error is not None:
            raise RuntimeError(f"the server did not start: {self.error!r}")

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(60)


def measure_latency(port: int, n_triggers: int, samples: int, seen: dict[str, float]) -> list[float]:
    """Values over the threshold for random items, one at a time; ms until the problem was notified."""
    out = []
    rng = random.Random(1)
    for i in rng.sample(range(n_triggers), min(samples, n_triggers)):
        host, name = f"tb-{i // ITEMS_PER_HOST}", f"tb-{i} on tb-{i // ITEMS_PER_HOST}"
        t0 = time.perf_counter()
        send(port, [(host, f"tb.v[{i}]", "75")])
        deadline = t0 + 10
        while name not in seen and time.perf_counter() < deadline:
            time.sleep(0.0005)
        if name in seen:
            out.append((seen[name] - t0) * 1000)
    return out


def measure_evaluations(port: int, n_triggers: int, seconds: float, stats: dict[str, int]) -> float:
    """Push values under the threshold for every item from 4 senders; evaluations/s the engine made."""
    stop = time.perf_counter() + seconds

    def pusher(w: int) -> None:
        mine = [i for i in range(n_triggers) if i % 4 == w]
        while time.perf_counter() < stop:
            for start in range(0, len(mine), 500):
                send(port, [(f"tb-{i // ITEMS_PER_HOST}", f"tb.v[{i}]", "10") for i in mine[start:start + 500]])

    e0, t0 = stats["evaluations"], time.perf_counter()
    threads = [threading.Thread(target=pusher, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    time.sleep(1)  # let the engine drain its queue
    return (stats["evaluations"] - e0) / (time.perf_counter() - t0)


class Receiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.got: dict[str, float] = {}
        got = self.got

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    got.setdefault(str(json.loads(body)["event"]), time.perf_counter())
                except (ValueError, KeyError):
                    pass
                self.send_response(200)
                self.end_headers()

            def log_message(self, *a: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer samples and shorter runs (within 60 s)")
    ap.add_argument("--triggers", type=int, default=10_000)
    ap.add_argument("--samples", type=int, help="latency samples (default 300, quick 60)")
    ap.add_argument("--database-url", help="default: SQLite in a temporary directory")
    ap.add_argument("--broker-url", default="redis://127.0.0.1:6379/14", help="for the webhook figure")
    ap.add_argument("--no-webhook", action="store_true", help="skip the problem -> webhook figure")
    args = ap.parse_args()
    samples = args.samples or (60 if args.quick else 300)

    tmp = Path(tempfile.mkdtemp(prefix="vigil-bench-triggers-"))
    url = args.database_url or f"sqlite:///{tmp / 'vigil.db'}"
    receiver = None if args.no_webhook else Receiver()
    t0 = time.perf_counter()
    engine = engine_for(url)
    upgrade(engine)
    ConfigRepo(engine).apply(doc_from_dict(config(args.triggers, receiver.port if receiver else None)))
    engine.dispose()
    print(f"# {args.triggers} triggers on {(args.triggers + ITEMS_PER_HOST - 1) // ITEMS_PER_HOST} hosts "
          f"imported in {time.perf_counter() - t0:.1f} s ({'SQLite' if url.startswith('sqlite') else 'PostgreSQL'})",
          flush=True)

    port = free_port()
    env = {**os.environ, "VIGIL_DATABASE_URL": url, "VIGIL_DATA_DIR": str(tmp), "VIGIL_LISTEN": f"127.0.0.1:{port}",
           "VIGIL_LOG_LEVEL": "warning", "VIGIL_BROKER_URL": args.broker_url, "VIGIL_ALERT_REDELIVERY": "30"}
    settings = Settings.from_env(env)
    seen: dict[str, float] = {}
    notified: dict[int, float] = {}
    escalator_notify = None
    worker = None
    if receiver is not None:
        escalator_notify, worker = start_alerting(settings, env, tmp)

    def notify(n: Notice) -> None:
        if isinstance(n, Event) and n.value == 1:
            now = time.perf_counter()
            seen.setdefault(n.name, now)
            notified.setdefault(n.eventid, now)
        if escalator_notify is not None:
            escalator_notify(n)

    server = Server(settings, notify)
    try:
        from vigil.server.triggers import evaluator

        stats = next(o.stats for o in _alive(evaluator.TriggerEngine))
        send(port, [(f"tb-{i // ITEMS_PER_HOST}", f"tb.v[{i}]", "10") for i in range(min(args.triggers, 500))])
        lat = measure_latency(port, args.triggers, samples, seen)
        evals = measure_evaluations(port, args.triggers, 5 if args.quick else 20, stats)
        print(f"# {len(lat)} of {samples} problems seen", flush=True)
        figures = [("trigger_event_latency_p50", statistics.median(lat) if lat else float("nan"), "ms"),
                   ("trigger_event_latency_p99", pct(lat, 99) if lat else float("nan"), "ms"),
                   ("trigger_evaluations", evals, "evaluations/s")]
        if receiver is not None:
            deadline = time.perf_counter() + 30
            while time.perf_counter() < deadline and len(receiver.got) < len(notified):
                time.sleep(0.05)
            hook = [(receiver.got[str(e)] - t) * 1000 for e, t in notified.items() if str(e) in receiver.got]
            print(f"# {len(hook)} of {len(notified)} problem webhooks received", flush=True)
            figures += [("problem_webhook_latency_p50", statistics.median(hook) if hook else float("nan"), "ms"),
                        ("problem_webhook_latency_p99", pct(hook, 99) if hook else float("nan"), "ms")]
    finally:
        server.close()
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
        if receiver is not None:
            receiver.close()
    for name, value, unit in figures:
        print(f"{name}: {value:.1f} {unit}" if unit == "ms" else f"{name}: {value:.0f} {unit}")


def _alive(cls: type) -> list[Any]:
    import gc

    return [o for o in gc.get_objects() if isinstance(o, cls)]


def start_alerting(settings: Settings, env: dict[str, str], tmp: Path) -> tuple[Callable[[Notice], None], Any]:
    raise NotImplementedError("wired once the alerts room lands")


if __name__ == "__main__":
    main()
