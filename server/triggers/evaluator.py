"""The trigger engine: evaluates triggers from the value cache and turns state changes into events.

One thread, the engine's, does all the work; the others only hand it things:

- a history writer calls `on_commit(batch)` after each commit: the batch goes on a bounded queue
  (never waiting: if the queue is full the engine is told it missed values, forgets its cache and
  evaluates every trigger at its next cycle from the store);
- the listener calls `unsupported(rows)` for values that arrived not supported, and `agent_seen(hostid)`
  when an active agent asks for its checks or sends data.

Each cycle takes whatever is queued, adds the values to the cache, evaluates the triggers of the
items that got values (trigger_items), on the timer (VIGIL_TRIGGER_TIMER) also the time-based ones,
and writes what changed in one transaction (EventStore.commit) before it calls `notify` for each
new event. Trigger values follow Zabbix 6.0:

- OK -> PROBLEM: a problem event and a problems row, tagged with the trigger's and its items' tags;
  unless a trigger it depends on is in PROBLEM, in which case nothing changes.
- PROBLEM, `multiple`: another problem event at each evaluation caused by a new value.
- PROBLEM -> OK: recovery_mode 0 when the expression is false, 1 when the recovery expression is
  true (until then it stays PROBLEM); an OK event resolves the open problems. Mode 2: the trigger
  value goes back to OK but its problems stay open until closed by hand.
- An evaluation that cannot give a result (EvaluationError) makes the trigger's state unknown with
  the error; its value stays.

Internal events (source 3): an item whose value arrives not supported (object 4), a host whose
active agent went silent for VIGIL_AGENT_UNREACHABLE seconds (object 1), and back again.

Problem updates: the engine polls `acknowledges` (anyone writes them, e.g. `vigil ack`), applies
closes (an OK event) and severity changes, and calls notify(ProblemUpdate).
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vigil.server.config.tables import EventObject, EventSource, ItemType
from vigil.server.store.base import Store, StoreError, WriteBatch
from vigil.server.store.events import (
    ACTION_CLOSE,
    ACTION_SEVERITY,
    AckRow,
    Cycle,
    EventStore,
    NewEvent,
)
from vigil.server.triggers.events import Event, Notice, ProblemUpdate
from vigil.server.triggers.valuecache import CacheError, ValueCache

log = logging.getLogger("vigil.triggers")

OK, PROBLEM = 0, 1
NORMAL, UNKNOWN = 0, 1
AVAILABLE_UNKNOWN, AVAILABLE, UNAVAILABLE = 0, 1, 2
QUEUE_SIZE = 10_000  # committed batches waiting for the engine at most
DRAIN_MAX = 1_000  # batches taken in one cycle at most
LASTACCESS_EVERY = 60  # seconds between two writes of an agent's lastaccess while it stays available
# Triggers evaluated without a new value (the timer's, new or changed ones) go at most this many per
# cycle, so values arriving meanwhile wait for one chunk, not for every time-based trigger.
BACKLOG_CHUNK = 100
TRIM_EVERY = 1.0  # seconds between two trims of the value cache (sooner when over its bound)


@dataclass(frozen=True, slots=True)
class EngineSettings:
    timer: float = 5.0  # seconds between evaluations of time-based triggers
    ack_poll: float = 1.0  # seconds between looks for new problem updates
    unreachable: int = 360  # seconds of silence after which an active agent is unreachable
    cache_values: int = 2_000_000


@dataclass(slots=True)
class _Trigger:
    ref: Any  # TriggerRef
    expr: Any  # Expression | None
    recovery: Any  # Expression | None
    parse_error: str
    hostids: tuple[int, ...]
    value: int = OK
    state: int = NORMAL
    error: str = ""
    lastchange: int = 0

    @property
    def time_based(self) -> bool:
        return bool((self.expr is not None and self.expr.time_based) or
                    (self.recovery is not None and self.recovery.time_based))


@dataclass(slots=True)
class _Pending:
    """What the cycle changed in memory, to undo if its transaction fails."""

    triggers: dict[int, tuple[int, int, str, int]] = field(default_factory=dict)
    items: dict[int, tuple[int, str, int] | None] = field(default_factory=dict)
    hosts: dict[int, tuple[int, str, int] | None] = field(default_factory=dict)
    problems: dict[tuple[int, int, int], list[int]] = field(default_factory=dict)
    reeval: set[int] = field(default_factory=set)


class TriggerEngine:
    def __init__(self, events: EventStore, repo: Any, config: Any, open_store: Callable[[], Store],
                 notify: Callable[[Notice], None] | None = None,
                 settings: EngineSettings = EngineSettings(), now: Callable[[], float] = time.time) -> None:
        self.store = events
        self.repo = repo  # ConfigRepo: triggers(), macros_for()
        self.config = config  # ConfigCache: .snapshot (hosts, items, version)
        self.notify = notify
        self.settings = settings
        self._now = now
        self.cache = ValueCache(open_store, settings.cache_values, now)
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(QUEUE_SIZE)
        self._overflow = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._version: int | None = None
        self._triggers: dict[int, _Trigger] = {}
        self._by_item: dict[int, list[int]] = {}
        self._timed: list[int] = []
        self._macros: dict[int, dict[str, str]] = {}
        self._host_names: dict[int, tuple[str, str]] = {}
        self._hostid_of: dict[str, int] = {}
        self._items: dict[int, tuple[int, str, str]] = {}  # itemid -> (hostid, key, name)
        self._item_tags: dict[int, tuple[tuple[str, str], ...]] = {}
        self._rtdata: dict[int, tuple[int, int, str, int]] = {}
        self._problems: dict[tuple[int, int, int], list[int]] = {}
        self._opened_now: dict[int, list[NewEvent]] = {}  # triggerid -> its problem events of this cycle
        self._item_state: dict[int, tuple[int, str, int]] = {}
        self._avail: dict[int, tuple[int, str, int]] = {}
        self._seen: dict[int, float] = {}  # hostid -> when its active agent was last heard (wall clock)
        self._written_access: dict[int, float] = {}
        self._active_hosts: set[int] = set()
        self._last_ack = 0
        self._next_timer = 0.0
        self._next_ack = 0.0
        self._retry: set[int] = set()
        self._backlog: deque[int] = deque()
        self._in_backlog: set[int] = set()
        self._next_trim = 0.0
        self._pending_closes: list[AckRow] = []
        self.stats = {"evaluations": 0, "events": 0, "cycles": 0, "failed_cycles": 0}
        self.ready = threading.Event()

    @property
    def idle(self) -> bool:
        """Nothing queued and no trigger waiting for its first evaluation (benchmarks wait for this)."""
        return self.ready.is_set() and not self._backlog and self._queue.empty()

    # --- called from other threads ---------------------------------------------------------------

    def on_commit(self, batch: WriteBatch) -> None:
        """A history writer committed `batch` (its thread: returns at once)."""
        if not len(batch):
            return
        try:
            self._queue.put_nowait(("values", batch))
        except queue.Full:
            self._overflow = True

    def unsupported(self, rows: list[tuple[int, int, str]]) -> None:
        """(itemid, clock, error) of values that arrived not supported (the listener's thread)."""
        if rows:
            try:
                self._queue.put_nowait(("unsupported", rows))
            except queue.Full:
                log.warning("trigger engine queue full: %d not-supported values not recorded", len(rows))

    def agent_seen(self, hostid: int) -> None:
        """An active agent of the host asked for checks or sent data (the listener's event loop)."""
        self._seen[hostid] = self._now()

    # --- the thread --------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._supervised, name="trigger-engine", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        try:
            self._queue.put_nowait(("wake", None))
        except queue.Full:
            pass
        if self._thread is not None:
            self._thread.join(timeout)
        self.cache.close()

    def _supervised(self) -> None:
        import sqlalchemy as sa
        from vigil.server.supervise import supervise

        supervise("trigger engine", self.run, self._stop, first_backoff=0.5, max_backoff=10.0,
                  expected=(StoreError, CacheError, sa.exc.OperationalError))

    def run(self) -> None:
        """Load the state, then cycle until stopped (the last cycle takes what was committed before)."""
        self.load()
        self.ready.set()
        while True:
            stopping = self._stop.is_set()
            now = self._now()
            wait = max(0.0, min(self._next_timer, self._next_ack) - now)
            msgs: list[tuple[str, Any]] = []
            try:
                busy = stopping or bool(self._backlog) or bool(self._retry)
                msgs.append(self._queue.get(timeout=0.001 if busy else min(wait, 1.0)))
            except queue.Empty:
                pass
            while len(msgs) < DRAIN_MAX:
                try:
                    msgs.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self.cycle(msgs)
            if stopping and self._queue.empty():
                return

    def load(self) -> None:
        """Read trigger values, open problems, item states and availability from the store."""
        self._rtdata = self.store.rtdata()
        self._problems = self.store.open_problems()
        self._item_state = self.store.item_states()
        self._avail = self.store.availability()
        started = self._now()
        for hostid, (available, _, lastaccess) in self._avail.items():
            if available == AVAILABLE:
                # an agent gets the whole grace period after a restart of the server: it could not
                # reach a server that was not running
                self._seen.setdefault(hostid, started)
                self._written_access[hostid] = float(lastaccess)
        self.cache.unsupported = {i: e or "not supported" for i, (s, e, _) in self._item_state.items() if s == 1}
        self._last_ack = self.store.last_acknowledgeid()
        self._version = None
        self._reload()
        self._pending_closes = self.store.pending_closes()

    # --- configuration ---------------------------------------------------------------------------

    def _reload(self) -> None:
        from vigil.server.triggers.expression import ExpressionError, parse

        snap = self.config.snapshot
        self._version = snap.version
        self._hostid_of = {h.host: h.hostid for h in snap.hosts.values()}
        self._host_names = self.store.host_names()
        self._items = self.store.items()
        self._item_tags = self.store.item_tags()
        # items of disabled hosts and disabled items are not in the snapshot: unknown to triggers
        self.cache.lookup = {k: (ref.itemid, int(ref.value_type)) for k, ref in snap.items.items()}
        self._active_hosts = {r.hostid for r in snap.items.values() if r.type == ItemType.AGENT_ACTIVE}
        old = self._triggers
        triggers: dict[int, _Trigger] = {}
        by_item: dict[int, list[int]] = {}
        macros: dict[int, dict[str, str]] = {}
        for ref in self.repo.triggers():
            expr = recovery = None
            error = ""
            try:
                expr = parse(ref.expression)
                if ref.recovery_mode == 1 and ref.recovery_expression:
                    recovery = parse(ref.recovery_expression)
            except ExpressionError as e:
                error = f"cannot parse the expression: {e}"
            hostids = tuple(sorted({self._items[i][0] for i in ref.itemids if i in self._items})) or (ref.hostid,)
            tr = _Trigger(ref, expr, recovery, error, hostids)
            prev = old.get(ref.triggerid)
            if prev is not None:
                tr.value, tr.state, tr.error, tr.lastchange = prev.value, prev.state, prev.error, prev.lastchange
            elif ref.triggerid in self._rtdata:
                tr.value, tr.state, tr.error, tr.lastchange = self._rtdata[ref.triggerid]
            triggers[ref.triggerid] = tr
            for itemid in ref.itemids:
                by_item.setdefault(itemid, []).append(ref.triggerid)
            if ref.hostid not in macros:
                macros[ref.hostid] = dict(self.repo.macros_for(ref.hostid))
        self._triggers = triggers
        self._by_item = by_item
        self._macros = macros
        self._timed = sorted(tid for tid, tr in triggers.items() if tr.time_based)
        self.cache.tracked = set(by_item)
        self.cache.forget(self.cache.tracked)
        types = {ref.itemid: int(ref.value_type) for ref in snap.items.values()}
        self.cache.prefetch({i: types[i] for i in by_item if i in types})
        # new or changed triggers are evaluated once, soon
        self._queue_backlog(sorted(tid for tid, tr in triggers.items()
                                   if tid not in old or old[tid].ref.expression != tr.ref.expression
                                   or old[tid].ref.recovery_expression != tr.ref.recovery_expression))
        log.info("triggers loaded: %d (%d time-based) on %d items", len(triggers), len(self._timed), len(by_item))

    def _queue_backlog(self, tids: list[int]) -> None:
        for tid in tids:
            if tid not in self._in_backlog:
                self._in_backlog.add(tid)
                self._backlog.append(tid)

    # --- one cycle ---------------------------------------------------------------------------------

    def cycle(self, msgs: list[tuple[str, Any]]) -> list[Notice]:
        """Take queued messages, evaluate, commit, notify; returns what was notified."""
        if self.config.snapshot.version != self._version:
            self._reload()
        now = self._now()
        inow = int(now)
        cycle = Cycle()
        pend = _Pending()
        notices: list[Notice] = []
        updates: list[tuple[AckRow, NewEvent | None]] = []
        touched: dict[int, tuple[int, int]] = {}  # itemid -> newest (clock, ns) in this cycle
        stamps: dict[int, set[tuple[int, int]]] = {}  # itemid -> every (clock, ns) it got in this cycle
        unsupported: list[tuple[int, int, str]] = []
        self._opened_now = {}
        for kind, payload in msgs:
            if kind == "values":
                self._note_values(payload, touched, stamps)
            elif kind == "unsupported":
                unsupported += payload
        if self._overflow:
            self._overflow = False
            log.warning("the trigger engine fell behind and missed values: re-reading its cache from the store")
            self.cache.clear()
            self._queue_backlog(sorted(self._triggers))
        todo = {tid for itemid in touched for tid in self._by_item.get(itemid, ())}
        from_value = set(todo)
        todo |= self._retry
        self._retry = set()
        if now >= self._next_timer:
            self._next_timer = now + self.settings.timer
            self._queue_backlog(self._timed)
            self._check_agents(now, cycle, pend)
        for _ in range(min(BACKLOG_CHUNK, len(self._backlog))):
            tid = self._backlog.popleft()
            self._in_backlog.discard(tid)
            todo.add(tid)
        for itemid, (clock, _) in touched.items():
            st = self._item_state.get(itemid)
            if st is not None and st[0] == 1:
                self._set_item_state(itemid, 0, "", clock, cycle, pend)
        for itemid, clock, error in unsupported:
            st = self._item_state.get(itemid)
            if st is None or st[0] != 1 or st[1] != error:
                self._set_item_state(itemid, 1, error, clock, cycle, pend)
        for tid in sorted(todo):
            tr = self._triggers.get(tid)
            if tr is None:
                continue
            stamp = max((touched[i] for i in tr.ref.itemids if i in touched), default=(inow, 0))
            before = (tr.value, tr.state, tr.error, tr.lastchange)
            try:
                if tid in from_value:
                    self._evaluate_earlier(tr, stamp, stamps, cycle, pend)
                self._evaluate(tr, max(inow, stamp[0]), stamp, tid in from_value, cycle, pend)
            except Exception as e:  # a fault in one trigger's evaluation must not stop the others
                log.exception("trigger %d %r: evaluation failed", tid, tr.ref.name)
                tr.value, tr.state, tr.error, tr.lastchange = before
                self._set_unknown(tr, f"evaluation failed: {type(e).__name__}: {e}", cycle, pend, before)
        last_ack = self._last_ack
        if now >= self._next_ack:
            self._next_ack = now + self.settings.ack_poll
            updates = self._updates(inow, cycle, pend)
        if cycle:
            try:
                self.store.commit(cycle)
            except Exception as e:
                self.stats["failed_cycles"] += 1
                log.error("writing events failed (evaluated again on the next cycle): %s",
                          str(e).splitlines()[0] if str(e) else repr(e))
                self._undo(pend)
                self._retry |= todo
                self._last_ack = last_ack  # the updates are read again
                return []
            for ev in cycle.events:
                if ev.problem:
                    self._problems.setdefault((ev.source, ev.object, ev.objectid), []).append(ev.eventid)
                if ev.resolves:
                    key = (ev.source, ev.object, ev.objectid)
                    left = [e for e in self._problems.get(key, []) if e not in ev.resolves]
                    if left:
                        self._problems[key] = left
                    else:
                        self._problems.pop(key, None)
                notices.append(self._event(ev))
            for ack, closed in updates:
                notices.append(ProblemUpdate(ack.acknowledgeid, ack.eventid, ack.userid, ack.clock, ack.message,
                                             ack.action, ack.old_severity, ack.new_severity,
                                             closed.eventid if closed is not None else None))
            self.stats["events"] += len(cycle.events)
        else:
            for ack, _ in updates:
                notices.append(ProblemUpdate(ack.acknowledgeid, ack.eventid, ack.userid, ack.clock, ack.message,
                                             ack.action, ack.old_severity, ack.new_severity, None))
        self.stats["cycles"] += 1
        if self.notify is not None:
            for n in notices:
                try:
                    self.notify(n)
                except Exception:
                    log.exception("notify failed for %s", n)
        if now >= self._next_trim or self.cache.size > self.cache.max_values:
            self._next_trim = now + TRIM_EVERY
            self.cache.trim()
        return notices

    def _note_values(self, batch: WriteBatch, touched: dict[int, tuple[int, int]],
                     stamps: dict[int, set[tuple[int, int]]]) -> None:
        # Only two kinds of item need a look: those a trigger reads (self._by_item, rebuilt with each
        # configuration version) and those not supported now (a value makes them supported again).
        # Most stored values are of neither: they cost one set lookup here, nothing more.
        self.cache.add(batch)
        by_item, unsupported = self._by_item, self.cache.unsupported
        if not by_item and not unsupported:
            return
        for rows in (batch.floats, batch.uints, batch.strs, batch.texts, batch.logs):
            for row in rows:
                itemid = row[0]
                if itemid in by_item or itemid in unsupported:
                    stamp = (row[1], row[2])
                    stamps.setdefault(itemid, set()).add(stamp)
                    old = touched.get(itemid)
                    if old is None or stamp > old:
                        touched[itemid] = stamp

    def _evaluate_earlier(self, tr: _Trigger, newest: tuple[int, int], stamps: dict[int, set[tuple[int, int]]],
                          cycle: Cycle, pend: _Pending) -> None:
        """Several values of the trigger's items in one cycle (a proxy's buffer after an outage, a
        sender's batch): as Zabbix 6.0, which evaluates a trigger for each value at that value's time,
        evaluate it at each one's clock, oldest first, so a problem that came and went inside the
        batch is raised and resolved with those values' clocks. The newest is the caller's evaluation.
        Values older than the trigger's last change do not rewrite its past and are skipped."""
        earlier: set[tuple[int, int]] = set()
        for i in tr.ref.itemids:
            earlier |= stamps.get(i, set())
        for stamp in sorted(s for s in earlier if s < newest):
            if stamp[0] >= tr.lastchange:
                self._evaluate(tr, stamp[0], stamp, True, cycle, pend)

    def _undo(self, pend: _Pending) -> None:
        for tid, (value, state, error, lastchange) in pend.triggers.items():
            tr = self._triggers.get(tid)
            if tr is not None:
                tr.value, tr.state, tr.error, tr.lastchange = value, state, error, lastchange
        for itemid, st in pend.items.items():
            if st is None:
                self._item_state.pop(itemid, None)
                self.cache.unsupported.pop(itemid, None)
            else:
                self._item_state[itemid] = st
                if st[0] == 1:
                    self.cache.unsupported[itemid] = st[1] or "not supported"
                else:
                    self.cache.unsupported.pop(itemid, None)
        for hostid, av in pend.hosts.items():
            if av is None:
                self._avail.pop(hostid, None)
            else:
                self._avail[hostid] = av

    # --- triggers ----------------------------------------------------------------------------------

    def _evaluate(self, tr: _Trigger, now: int, stamp: tuple[int, int], from_value: bool, cycle: Cycle,
                  pend: _Pending) -> None:
        from vigil.server.triggers.expression import EvaluationError, evaluate

        self.stats["evaluations"] += 1
        ref = tr.ref
        macros = self._macros.get(ref.hostid, {})
        before = (tr.value, tr.state, tr.error, tr.lastchange)
        if tr.expr is None:
            self._set_unknown(tr, tr.parse_error, cycle, pend, before)
            return
        try:
            problem = evaluate(tr.expr, self.cache, now, macros) != 0
            recovered = False
            if not problem and tr.value == PROBLEM and ref.recovery_mode == 1 and tr.recovery is not None:
                recovered = evaluate(tr.recovery, self.cache, now, macros) != 0
        except EvaluationError as e:
            self._set_unknown(tr, str(e), cycle, pend, before)
            return
        except CacheError as e:
            self._set_unknown(tr, str(e), cycle, pend, before)
            return
        changed_state = tr.state != NORMAL
        tr.state, tr.error = NORMAL, ""
        clock, ns = stamp
        if problem:
            if tr.value == OK or (ref.multiple and from_value):
                if self._blocked(tr):
                    if changed_state:
                        self._write_rt(tr, cycle, pend, before)
                    return
                self._opened_now.setdefault(ref.triggerid, []).append(self._problem_event(tr, clock, ns, cycle))
                if tr.value == OK:
                    tr.value, tr.lastchange = PROBLEM, clock
                self._write_rt(tr, cycle, pend, before)
                return
        elif tr.value == PROBLEM:
            mode = ref.recovery_mode
            if mode == 1 and not recovered:
                pass
            else:
                tr.value, tr.lastchange = OK, clock
                if mode != 2:
                    key = (EventSource.TRIGGERS, EventObject.TRIGGER, ref.triggerid)
                    opened = tuple(self._problems.get(key, ()))
                    cycle.events.append(NewEvent(EventSource.TRIGGERS, EventObject.TRIGGER, ref.triggerid, clock, ns,
                                                 OK, self._name(tr, ref.name), ref.severity,
                                                 self._tags(tr), resolves=opened,
                                                 resolves_new=tuple(self._opened_now.pop(ref.triggerid, ()))))
                self._write_rt(tr, cycle, pend, before)
                return
        if changed_state:
            self._write_rt(tr, cycle, pend, before)

    def _blocked(self, tr: _Trigger) -> bool:
        """A trigger it depends on (directly or further up) is in PROBLEM."""
        seen: set[int] = set()
        todo = list(tr.ref.depends_on)
        while todo:
            tid = todo.pop()
            if tid in seen:
                continue
            seen.add(tid)
            up = self._triggers.get(tid)
            if up is None:
                continue
            if up.value == PROBLEM:
                return True
            todo += list(up.ref.depends_on)
        return False

    def _problem_event(self, tr: _Trigger, clock: int, ns: int, cycle: Cycle) -> NewEvent:
        ref = tr.ref
        ev = NewEvent(EventSource.TRIGGERS, EventObject.TRIGGER, ref.triggerid, clock, ns, PROBLEM,
                      self._name(tr, ref.name), ref.severity, self._tags(tr), problem=True)
        cycle.events.append(ev)
        return ev

    def _set_unknown(self, tr: _Trigger, error: str, cycle: Cycle, pend: _Pending,
                     before: tuple[int, int, str, int]) -> None:
        if tr.state == UNKNOWN and tr.error == error:
            return
        if tr.state != UNKNOWN:
            log.info("trigger %d %r is unknown: %s", tr.ref.triggerid, tr.ref.name, error)
        tr.state, tr.error = UNKNOWN, error
        self._write_rt(tr, cycle, pend, before)

    def _write_rt(self, tr: _Trigger, cycle: Cycle, pend: _Pending, before: tuple[int, int, str, int]) -> None:
        pend.triggers.setdefault(tr.ref.triggerid, before)
        cycle.rtdata[tr.ref.triggerid] = (tr.value, tr.state, tr.error, tr.lastchange)

    def _tags(self, tr: _Trigger) -> tuple[tuple[str, str], ...]:
        out: dict[tuple[str, str], None] = {}
        for tag, value in tr.ref.tags:
            out[(tag, self._expand(tr, value))] = None
        for itemid in tr.ref.itemids:
            for tag in self._item_tags.get(itemid, ()):
                out[tag] = None
        return tuple(out)

    def _name(self, tr: _Trigger, text: str) -> str:
        return self._expand(tr, text)

    _MACRO = re.compile(r"\{(HOST\.NAME|HOST\.HOST|ITEM\.LASTVALUE|ITEM\.VALUE|ITEM\.NAME|ITEM\.KEY)([1-9]?)\}"
                        r"|\{\$[A-Z0-9_.]+(?::[^}]*)?\}")

    def _expand(self, tr: _Trigger, text: str) -> str:
        if "{" not in text:
            return text
        macros = self._macros.get(tr.ref.hostid, {})
        calls = list(tr.expr.functions) if tr.expr is not None else []
        refs: list[tuple[str, str]] = []
        for f in calls:
            if f.host is not None and (f.host, f.key) not in refs:
                refs.append((f.host, f.key))

        def sub(m: re.Match[str]) -> str:
            whole = m.group(0)
            if whole.startswith("{$"):
                return _user_macro(whole, macros)
            name, n = m.group(1), int(m.group(2) or 1)
            if n > len(refs):
                return "*UNKNOWN*"
            host, key = refs[n - 1]
            hostid = self._hostid_of.get(host)
            if name == "HOST.HOST":
                return host
            if name == "HOST.NAME":
                return self._host_names.get(hostid, (host, host))[1] if hostid is not None else host
            if name == "ITEM.KEY":
                return key
            found = self.cache.lookup.get((host, key))
            if found is None:
                return "*UNKNOWN*"
            if name == "ITEM.NAME":
                return self._items.get(found[0], (0, key, key))[2] or key
            try:
                last = self.cache.values(found[0], found[1], 2**31 - 1, count=1)
            except CacheError:
                return "*UNKNOWN*"
            return _fmt(last[0][2]) if last else "*UNKNOWN*"

        return self._MACRO.sub(sub, text)

    # --- internal events -------------------------------------------------------------------------------

    def _set_item_state(self, itemid: int, state: int, error: str, clock: int, cycle: Cycle,
                        pend: _Pending) -> None:
        old = self._item_state.get(itemid)
        pend.items.setdefault(itemid, old)
        self._item_state[itemid] = (state, error, clock)
        cycle.item_states[itemid] = (state, error, clock)
        if state == 1:
            self.cache.unsupported[itemid] = error or "not supported"
        else:
            self.cache.unsupported.pop(itemid, None)
        was = old[0] if old is not None else 0
        if was == state:
            return  # a different error, the same state: no event
        hostid, key, _ = self._items.get(itemid, (0, str(itemid), ""))
        host = self._host_names.get(hostid, ("?", "?"))[0]
        key3 = (EventSource.INTERNAL, EventObject.ITEM, itemid)
        if state == 1:
            name = f"Item \"{key}\" on host \"{host}\" became not supported: {error}"
            cycle.events.append(NewEvent(EventSource.INTERNAL, EventObject.ITEM, itemid, clock, 0, 1, name, 0,
                                         problem=True))
        else:
            name = f"Item \"{key}\" on host \"{host}\" became supported again"
            cycle.events.append(NewEvent(EventSource.INTERNAL, EventObject.ITEM, itemid, clock, 0, 0, name, 0,
                                         resolves=tuple(self._problems.get(key3, ()))))
        # the triggers reading the item see it (un)supported at once
        self._retry |= set(self._by_item.get(itemid, ()))

    def _check_agents(self, now: float, cycle: Cycle, pend: _Pending) -> None:
        limit = self.settings.unreachable
        for hostid, seen in list(self._seen.items()):
            av = self._avail.get(hostid)
            state = av[0] if av is not None else AVAILABLE_UNKNOWN
            host = self._host_names.get(hostid, (str(hostid), ""))[0]
            key3 = (EventSource.INTERNAL, EventObject.HOST, hostid)
            if now - seen >= limit:
                if state == AVAILABLE:
                    err = f"no active checks request or data from the agent for {int(now - seen)} s"
                    pend.hosts.setdefault(hostid, av)
                    self._avail[hostid] = cycle.hosts[hostid] = (UNAVAILABLE, err, int(seen))
                    cycle.events.append(NewEvent(EventSource.INTERNAL, EventObject.HOST, hostid, int(now), 0, 1,
                                                 f"Agent on host \"{host}\" is unreachable: {err}", 0, problem=True))
                continue
            if state != AVAILABLE:
                pend.hosts.setdefault(hostid, av)
                self._avail[hostid] = cycle.hosts[hostid] = (AVAILABLE, "", int(seen))
                self._written_access[hostid] = seen
                if state == UNAVAILABLE:
                    cycle.events.append(NewEvent(EventSource.INTERNAL, EventObject.HOST, hostid, int(now), 0, 0,
                                                 f"Agent on host \"{host}\" is available again", 0,
                                                 resolves=tuple(self._problems.get(key3, ()))))
            elif seen - self._written_access.get(hostid, 0) >= LASTACCESS_EVERY:
                self._written_access[hostid] = seen
                self._avail[hostid] = cycle.hosts[hostid] = (AVAILABLE, "", int(seen))

    # --- problem updates -------------------------------------------------------------------------------

    def _updates(self, now: int, cycle: Cycle, pend: _Pending) -> list[tuple[AckRow, NewEvent | None]]:
        try:
            acks = self.store.acknowledges_after(self._last_ack)
        except Exception as e:
            log.warning("cannot read problem updates: %s", str(e).splitlines()[0] if str(e) else repr(e))
            return []
        pending = self._pending_closes
        self._pending_closes = []
        out: list[tuple[AckRow, NewEvent | None]] = []
        closing: set[int] = set()
        for ack in pending + acks:
            self._last_ack = max(self._last_ack, ack.acknowledgeid)
            closed: NewEvent | None = None
            if ack.action & ACTION_SEVERITY:
                cycle.severities[ack.eventid] = ack.new_severity
            if ack.action & ACTION_CLOSE and ack.eventid not in closing:
                closed = self._close(ack, now, cycle, pend)
                if closed is not None:
                    closing.add(ack.eventid)
            if ack not in pending:
                out.append((ack, closed))
        return out

    def _close(self, ack: AckRow, now: int, cycle: Cycle, pend: _Pending) -> NewEvent | None:
        for (source, obj, objectid), ids in self._problems.items():
            if ack.eventid in ids and source == EventSource.TRIGGERS and obj == EventObject.TRIGGER:
                tr = self._triggers.get(objectid)
                name = tr.ref.name if tr is not None else ""
                sev = tr.ref.severity if tr is not None else 0
                ev = NewEvent(source, obj, objectid, now, 0, OK, self._name(tr, name) if tr is not None else name,
                              sev, self._tags(tr) if tr is not None else (), resolves=(ack.eventid,),
                              userid=ack.userid)
                cycle.events.append(ev)
                if tr is not None and tr.value == PROBLEM and len(ids) == 1:
                    before = (tr.value, tr.state, tr.error, tr.lastchange)
                    tr.value, tr.lastchange = OK, now
                    self._write_rt(tr, cycle, pend, before)
                return ev
        return None

    def _event(self, ev: NewEvent) -> Event:
        if ev.source == EventSource.TRIGGERS:
            tr = self._triggers.get(ev.objectid)
            hostids = tr.hostids if tr is not None else ()
        elif ev.object == EventObject.ITEM:
            hostids = (self._items[ev.objectid][0],) if ev.objectid in self._items else ()
        else:
            hostids = (ev.objectid,)
        return Event(ev.eventid, ev.source, ev.object, ev.objectid, ev.clock, ev.ns, ev.value, ev.severity, ev.name,
                     hostids, ev.tags, ev.resolves)

    # --- for tests and the bench -----------------------------------------------------------------------

    def trigger_state(self, triggerid: int) -> tuple[int, int, str] | None:
        tr = self._triggers.get(triggerid)
        return None if tr is None else (tr.value, tr.state, tr.error)


def _user_macro(text: str, macros: Mapping[str, str]) -> str:
    if text in macros:
        return macros[text]
    name, sep, _ = text[:-1].partition(":")
    if sep:  # {$MACRO:context}: the context value, else the macro without context
        return macros.get(text, macros.get(name + "}", text))
    return text


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if v == int(v) and abs(v) < 1e15:
            return str(int(v))
        return f"{v:.4f}".rstrip("0").rstrip(".")
    return str(v)
