"""The poller scheduler: every polled item at its own interval, a bounded number of polls at once.

Timing is Zabbix's: an item with interval D is due at the second of each period of D given by its
id (`nextcheck`: the first t > now with t ≡ itemid (mod D)), so thousands of items at 60 s spread
over the minute instead of all firing at second 0, and an item keeps its slot across restarts.
At most VIGIL_POLLERS polls run at once; each is bounded by its time-out (VIGIL_TIMEOUT, an HTTP
item's own, a ping's packets), and all run on one asyncio loop (HTTP requests on a thread pool), so
a device that never answers holds one slot for one time-out and nobody else waits for it.

Availability is kept per interface for the kinds Zabbix keeps it for (agent, SNMP, IPMI, JMX), with
Zabbix 6.0's rules: after a network error the interface is unreachable and its items wait
VIGIL_UNREACHABLE_DELAY seconds; then one item probes it (the others wait for the probe); once the
errors have lasted VIGIL_UNREACHABLE_PERIOD the interface is unavailable and probed every
VIGIL_UNAVAILABLE_DELAY. The first answer makes it available again and its items go back to their
slots. The state goes to the interfaces table (available, error, errors_from, disable_until).

A value goes through the item's preprocessing (the `preprocess` hook), is converted to the item's
value type by ingest's rules and is handed, with everyone else's, to ingest's Batcher, so polled
values are stored, rolled up into trends and evaluated exactly like received ones. Dependent items
take their master's value after the master's preprocessing. An item that cannot be collected
(NotSupported, a value its type cannot hold, a configuration problem) becomes not supported with
the reason in item_state; its next good value makes it normal again (`_set_state`).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vigil.server.config.repo import ConfigRepo, PollConfig, PollInterface, PollItem
from vigil.server.config.tables import Availability, ItemType, ValueType
from vigil.server.ingest.convert import ConversionError, convert
from vigil.server.pollers import NotSupported, Polled, Unreachable
from vigil.server.settings import Settings
from vigil.server.store.base import StoreError, WriteBatch

log = logging.getLogger("vigil.pollers")

PollFn = Callable[[PollItem, float], Awaitable["str | Polled"]]
Value = str | int | float
# preprocess(item, value, clock_ns, error) -> the value to store (None: discard it); raises NotSupported.
# `error` is set (and value None) when the item could not be read: a "check for not supported value"
# step may then turn it into a value.
Preprocess = Callable[[PollItem, "Value | None", int, "str | None"], "Value | None"]
TimeoutFn = Callable[[PollItem, float], float]
# Interfaces whose availability is tracked (Zabbix: agent, SNMP, IPMI, JMX; not simple checks or HTTP).
TRACKED = frozenset({ItemType.AGENT, ItemType.SNMP, ItemType.IPMI, ItemType.JMX})
# Items in the configuration that are never polled: they take values from a master or from traps.
NOT_POLLED = frozenset({ItemType.DEPENDENT, ItemType.SNMP_TRAP})
PROBE_WAIT = 1.0  # seconds an item of an interface being probed waits before it looks again


def nextcheck(itemid: int, delay: int, now: float) -> int:
    """Zabbix's schedule: the first second after `now` at offset itemid % delay in its period."""
    delay = max(int(delay), 1)
    t = int(now)
    n = t - t % delay + itemid % delay
    while n <= now:
        n += delay
    return n


class Preprocessor:
    """Runs an item's preprocessing steps (vigil.server.preprocessing) and keeps each item's step
    state (previous values for change and discard-unchanged steps) between its values."""

    def __init__(self) -> None:
        self._states: dict[int, Any] = {}
        self._steps: dict[int, tuple[Any, ...]] = {}

    def __call__(self, item: PollItem, value: Value | None, clock_ns: int, error: str | None = None) -> Value | None:
        from vigil.server.preprocessing import Step, run

        spec = item.poll.preprocessing
        if not spec:
            if error is not None:
                raise NotSupported(error)
            return value
        steps = self._steps.get(item.itemid)
        if steps is None or len(steps) != len(spec) or any(
                (a.type, a.params, a.error_handler, a.error_handler_params) !=
                (b.type, b.params, b.error_handler, b.error_handler_params) for a, b in zip(steps, spec, strict=True)):
            steps = self._steps[item.itemid] = tuple(Step(x.type, x.params, x.error_handler, x.error_handler_params)
                                                     for x in spec)
        r = run(steps, value, clock_ns / 1e9, self._states.get(item.itemid), error=error,
                value_type=int(item.value_type))
        self._states[item.itemid] = r.state
        if r.error is not None:
            raise NotSupported(r.error)
        return None if r.discarded else r.value

    def forget(self, keep: set[int]) -> None:
        """Drop the state of items no longer configured."""
        for d in (self._states, self._steps):
            for itemid in set(d) - keep:
                del d[itemid]


@dataclass(frozen=True, slots=True)
class PollerSettings:
    pollers: int = 100  # polls at once
    timeout: float = 3.0
    unreachable_period: int = 45
    unavailable_delay: int = 60
    unreachable_delay: int = 15
    config_refresh: float = 1.0
    flush_interval: float = 0.2  # seconds values wait to be handed to the Batcher together
    flush_values: int = 1000  # or until this many are waiting


@dataclass(slots=True)
class InterfaceState:
    interfaceid: int
    hostid: int
    type: int
    available: int = Availability.UNKNOWN
    error: str = ""
    errors_from: int = 0
    disable_until: int = 0
    probing: bool = False


@dataclass(slots=True)
class Stats:
    polls: int = 0
    values: int = 0
    not_supported: int = 0
    network_errors: int = 0
    lateness: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))  # s from due to start


def default_pollers(ipmi_threads: int = 8) -> dict[ItemType, PollFn]:
    from vigil.server.pollers import agent, calculated, external, http, jmx, nagios, simple, ssh, telnet
    from vigil.server.pollers.ipmi import IpmiPoller

    out: dict[ItemType, PollFn] = {ItemType.AGENT: agent.poll, ItemType.SIMPLE: simple.poll,
                                   ItemType.HTTP_AGENT: http.poll}
    out[ItemType.SNMP] = SnmpPoller()
    out[ItemType.JMX] = jmx.JmxPoller()
    out[ItemType.NAGIOS] = nagios.NagiosPoller()
    out[ItemType.EXTERNAL] = external.poll
    out[ItemType.IPMI] = IpmiPoller(ipmi_threads)
    out[ItemType.SSH] = ssh.SshPoller()
    out[ItemType.TELNET] = telnet.poll
    out[ItemType.CALCULATED] = calculated.CalculatedPoller()
    return out


class SnmpPoller:
    """SNMP items through server/pollers/snmp.py: one SnmpSession per interface, shared by its items
    (made again when the interface's address or details change). A device that does not answer, or
    refuses v3 credentials, is a network error of its interface; a missing OID is the item's."""

    def __init__(self) -> None:
        self._sessions: dict[int, Any] = {}
        self._engines: Any = None

    async def __call__(self, item: PollItem, timeout: float) -> str:
        from vigil.server.pollers import snmp
        from vigil.server.pollers.snmp_oids import OidError
        from vigil.server.pollers.snmp_values import NotSupported as OidNotSupported

        itf = item.interface
        if itf is None:
            raise NotSupported("the host has no snmp interface to poll this item through")
        try:
            target = snmp.SnmpTarget.from_interface(itf.address, itf.port, itf.details, timeout=timeout, retries=0)
            request = snmp.oid_for_item(item.poll.snmp_oid)
        except (snmp.SnmpConfigError, OidError) as e:
            raise NotSupported(str(e)) from None
        session = self._sessions.get(itf.interfaceid)
        if session is None or session.target != target:
            if session is not None:
                await session.close()
            if self._engines is None:
                self._engines = snmp.SnmpEngines()
            session = self._sessions[itf.interfaceid] = snmp.SnmpSession(target, self._engines)
        try:
            result = await session.poll(request)
        except OidNotSupported as e:
            raise NotSupported(str(e)) from None
        except snmp.SnmpNetworkError as e:
            raise Unreachable(str(e)) from None
        except snmp.SnmpError as e:
            raise NotSupported(str(e)) from None
        return str(result.value)

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()


def default_timeouts() -> dict[ItemType, TimeoutFn]:
    from vigil.server.pollers import http, simple

    out = {ItemType.HTTP_AGENT: http.item_timeout, ItemType.SIMPLE: simple.timeout_for}
    out[ItemType.NAGIOS] = http.item_timeout  # the item's own `timeout` field, as HTTP items
    out[ItemType.EXTERNAL] = http.item_timeout
    return out


class Scheduler:
    def __init__(self, repo: ConfigRepo, submit: Callable[[WriteBatch], Awaitable[None]],
                 settings: PollerSettings | None = None, pollers: Mapping[ItemType, PollFn] | None = None,
                 preprocess: Preprocess | None = None, timeouts: Mapping[ItemType, TimeoutFn] | None = None,
                 clock: Callable[[], float] = time.time,
                 unsupported: Callable[[list[tuple[int, int, str]]], None] | None = None,
                 lld: Callable[[int, str, int], None] | None = None) -> None:
        """`unsupported`: where (itemid, clock, error) of items that became not supported go when the
        trigger engine keeps item_state (vigil.server.triggers.evaluator.TriggerEngine.unsupported; it
        also makes them normal again on their next value); None: the scheduler writes item_state itself.
        `lld`: where discovery rules' values go, (itemid, value, clock_ns) (vigil.server.lld.LldProcessor)."""
        self.repo = repo
        self.submit = submit
        self.s = settings or PollerSettings()
        self.pollers = dict(default_pollers() if pollers is None else pollers)
        for poller in self.pollers.values():  # pollers that read the configuration themselves (calculated)
            bind = getattr(poller, "bind", None)
            if bind is not None:
                bind(repo)
        self.timeouts = dict(default_timeouts() if timeouts is None else timeouts)
        self.preprocess = preprocess or Preprocessor()
        self.clock = clock
        self.unsupported = unsupported
        self.lld = lld
        self.version = -1
        self.reloads_itself = True  # False: the ingest ConfigCache loads it in step with its snapshot
        self.items: dict[int, PollItem] = {}
        self.dependents: dict[int, list[int]] = {}
        self._traps: dict[str, list[tuple[int, str]]] = {}  # SNMP interface address -> its snmptrap items
        self.interfaces: dict[int, InterfaceState] = {}
        self.stats = Stats()
        self._heap: list[tuple[float, int, int]] = []  # (due, itemid, generation)
        self._gen: dict[int, int] = {}
        self._seq = 0
        self._running: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._states: dict[int, tuple[int, str]] = {}
        self._state_changes: dict[int, tuple[int, str, int]] = {}
        self._iface_changes: set[int] = set()
        self._batch = WriteBatch()
        self._sem = asyncio.Semaphore(self.s.pollers)
        self._wake = asyncio.Event()
        self._flush = asyncio.Event()

    # --- configuration ---------------------------------------------------------------------------

    def load(self, cfg: PollConfig) -> None:
        """Take a new configuration: new items and ones whose interval changed get a slot; the others
        keep theirs; removed ones are dropped (a poll in flight finishes, its value is kept)."""
        now = self.clock()
        old = self.items
        self.items, self.dependents, self.version = cfg.items, cfg.dependents, cfg.version
        traps: dict[str, list[tuple[int, str]]] = {}
        for itemid, item in cfg.items.items():
            if item.type == ItemType.SNMP_TRAP and item.interface is not None:
                traps.setdefault(item.interface.address, []).append((itemid, item.key))
            if item.type in NOT_POLLED:
                continue
            prev = old.get(itemid)
            if (item.error or item.type not in self.pollers) and (prev is None or prev.error != item.error):
                self._schedule(itemid, now)  # not supported at once, saying why, not at its first slot
            elif prev is None and item.flags == 1:
                self._schedule(itemid, now)  # a discovery rule runs as soon as it appears (linked, or at start)
            elif prev is None or prev.delay != item.delay or itemid not in self._gen:
                self._schedule(itemid, nextcheck(itemid, item.delay, now))
        self._traps = traps
        for itemid in set(old) - set(cfg.items):
            self._gen.pop(itemid, None)
        if isinstance(self.preprocess, Preprocessor):
            self.preprocess.forget(set(cfg.items))
        for iid, itf in cfg.interfaces.items():
            st = self.interfaces.get(iid)
            if st is None:
                self.interfaces[iid] = InterfaceState(iid, itf.hostid, itf.type, itf.available, itf.error,
                                                      itf.errors_from, itf.disable_until)
        for iid in set(self.interfaces) - set(cfg.interfaces):
            del self.interfaces[iid]
        self._wake.set()

    def schedule_of(self) -> dict[int, float]:
        """itemid -> when it is next due (for tests and the bench)."""
        return {itemid: due for due, itemid, gen in self._heap if self._gen.get(itemid) == gen}

    def check_now(self, itemids: list[int]) -> int:
        """Poll these items at once ("Execute now", as zbx_dc_reschedule_items()): each due now, then
        back to its own slots; how many were rescheduled (items this scheduler does not poll, or
        dependent and trap items, are left alone). A poll still running is not started twice."""
        now = self.clock()
        n = 0
        for itemid in itemids:
            item = self.items.get(itemid)
            if item is None or item.type in NOT_POLLED:
                continue
            self._schedule(itemid, now)
            n += 1
        if n:
            self._wake.set()
        return n

    def follow(self, follow: Callable[[Callable[[], PollConfig], Callable[[PollConfig], None]], None]) -> None:
        """Load the configuration now, before running, and then whenever `follow`'s owner (ingest's
        ConfigCache.follow) reloads its own, instead of on a timer of the scheduler's."""
        self._states = self.repo.item_states()
        self.load(self.repo.poll_config())
        follow(self.repo.poll_config, self.load)
        self.reloads_itself = False

    def _schedule(self, itemid: int, due: float) -> None:
        self._seq += 1
        self._gen[itemid] = self._seq
        heapq.heappush(self._heap, (due, itemid, self._seq))

    # --- the loop --------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self._sem = asyncio.Semaphore(self.s.pollers)  # bound to this loop (a scheduler may run again)
        self._wake = asyncio.Event()
        self._flush = asyncio.Event()
        if self.version < 0:
            self._states = await asyncio.to_thread(self.repo.item_states)
            self.load(await asyncio.to_thread(self.repo.poll_config))
        log.info("pollers: %d items to poll, %d at once at most", sum(1 for i in self.items.values()
                                                                       if i.type not in NOT_POLLED),
                 self.s.pollers)
        helpers = [asyncio.create_task(self._flusher(stop)), asyncio.create_task(self._state_writer(stop))]
        if self.reloads_itself:
            helpers.append(asyncio.create_task(self._reloader(stop)))
        try:
            while not stop.is_set():
                now = self.clock()
                while self._heap and self._heap[0][0] <= now:
                    due, itemid, gen = heapq.heappop(self._heap)
                    if self._gen.get(itemid) == gen:
                        self._dispatch(itemid, due, now)
                wait = min(self._heap[0][0] - now, 1.0) if self._heap else 1.0
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), max(wait, 0.001))
                except TimeoutError:
                    pass
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            stop.set()
            await asyncio.gather(*helpers, return_exceptions=True)
            await self._flush_values()
            await self._write_states()
            for poller in self.pollers.values():
                close = getattr(poller, "close", None)
                if close is not None and asyncio.iscoroutinefunction(close):
                    try:
                        await close()
                    except Exception as e:  # closing sockets must not hide how the run ended
                        log.warning("closing a poller failed: %s", e)

    def _dispatch(self, itemid: int, due: float, now: float) -> None:
        item = self.items.get(itemid)
        if item is None or item.type in NOT_POLLED:  # gone, or now a dependent or trap item
            return
        nxt = nextcheck(itemid, item.delay, now)
        poller = self.pollers.get(item.type)
        if item.error or poller is None:
            self._schedule(itemid, nxt)
            self._set_state(item, 1, item.error or f"Vigil cannot poll items of type {item.type.name.lower()} "
                            "yet")
            return
        if itemid in self._running:  # still busy with the last poll: skip this slot
            self._schedule(itemid, nxt)
            return
        probe = False
        st = self.interfaces.get(item.interface.interfaceid) if (
            item.interface is not None and item.type in TRACKED) else None
        if st is not None:
            if st.disable_until > now:
                self._schedule(itemid, st.disable_until)
                return
            if st.errors_from:
                if st.probing:
                    self._schedule(itemid, now + PROBE_WAIT)
                    return
                st.probing = probe = True
        self._schedule(itemid, nxt)
        self._running.add(itemid)
        task = asyncio.create_task(self._poll(item, poller, due, st, probe))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _poll(self, item: PollItem, poller: PollFn, due: float, st: InterfaceState | None,
                    probe: bool) -> None:
        try:
            # A poller with its own bound (the Java gateway's VIGIL_JAVA_POLLERS, as Zabbix's separate Java
            # pollers) does not hold one of the VIGIL_POLLERS slots while its items wait for it.
            async with contextlib.nullcontext() if getattr(poller, "own_limit", False) else self._sem:
                self.stats.lateness.append(max(self.clock() - due, 0.0))
                self.stats.polls += 1
                t = self.timeouts.get(item.type, _default_timeout)(item, self.s.timeout)
                try:
                    async with asyncio.timeout(t + 0.5):  # the poller's own time-out fires first, with its reason
                        value = await poller(item, t)
                except TimeoutError:
                    if st is not None:
                        raise Unreachable(f"Timeout while polling {_where(item.interface)}: no answer within "
                                          f"{t:g} s") from None
                    raise NotSupported(f"Timeout: no answer within {t:g} s") from None
            if st is not None:
                self._interface_ok(st)
            if isinstance(value, Polled):
                self._value(item, value.value, time.time_ns(), feed=value.feed)
            else:
                self._value(item, value, time.time_ns())
        except NotSupported as e:
            if st is not None:
                self._interface_ok(st)
            self._value(item, None, time.time_ns(), error=str(e))
        except Unreachable as e:
            if st is not None:
                self._interface_error(st, item, str(e))
            else:
                self._set_state(item, 1, str(e))
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug in a poller must not stop the others
            log.exception("polling %s on %s failed", item.key, item.host)
            self._set_state(item, 1, f"Internal error while polling: {e!r}")
        finally:
            self._running.discard(item.itemid)
            if probe and st is not None:
                st.probing = False
                self._wake.set()

    # --- values and states -----------------------------------------------------------------------

    def _value(self, item: PollItem, text: Value | None, clock_ns: int, depth: int = 0,
               error: str | None = None, feed: str | None = None) -> None:
        """A value (or, with `error`, the reason there is none) through the item's preprocessing, into the
        batch; then its dependent items, with the value the item's preprocessing gave (or `feed`, the
        poller's own value for them: see vigil.server.pollers.Polled)."""
        try:
            out = self.preprocess(item, text, clock_ns, error)
        except NotSupported as e:
            self._set_state(item, 1, str(e))
            return
        if out is not None and item.flags == 1:  # a discovery rule: to the LLD processor, not to history
            if self.lld is not None:
                self.lld(item.itemid, str(out), clock_ns)
            self._set_state(item, 0, "")
            return
        if out is not None:
            try:
                v = convert(item.value_type, out) if isinstance(out, str) else out
            except ConversionError as e:
                self._set_state(item, 1, str(e))
            else:
                self._add(item, v, clock_ns)
                self._set_state(item, 0, "")
        if feed is not None:
            out = feed
        if out is not None:
            self._feed_dependents(item.itemid, out, clock_ns, depth)

    def _feed_dependents(self, itemid: int, value: Value, clock_ns: int, depth: int) -> None:
        """The one route of a master's value to its dependent items (polled masters, traps and ingest's)."""
        if depth >= 3:
            return
        for dep in self.dependents.get(itemid, ()):
            d = self.items.get(dep)
            if d is not None:
                self._value(d, value, clock_ns, depth + 1)

    def received(self, batch: WriteBatch) -> None:
        """Values ingest stored (trapper items, active agents): their dependent items take them through
        their own preprocessing, exactly as a polled master's dependents do. Call it on the loop."""
        if not self.dependents:
            return
        n = len(self._batch)
        for rows, at in ((batch.floats, 3), (batch.uints, 3), (batch.strs, 3), (batch.texts, 3), (batch.logs, 6)):
            for r in rows:
                if r[0] in self.dependents:
                    self._feed_dependents(r[0], r[at], r[1] * 1_000_000_000 + r[2], 0)  # type: ignore[arg-type]
        if len(self._batch) != n:
            self._flush.set()

    def trap(self, trap: Any) -> list[int]:
        """An SNMP trap (vigil.server.pollers.snmptraps.Trap) to the snmptrap[regexp] / snmptrap.fallback
        items of the host(s) whose SNMP interface has its source address; returns the items it went to."""
        from vigil.server.pollers.snmptraps import items_for_trap

        itemids = items_for_trap(trap, self._traps)
        clock_ns = int(trap.clock * 1_000_000_000)
        for itemid in itemids:
            item = self.items.get(itemid)
            if item is not None:
                self._value(item, trap.text, clock_ns)
        if itemids:
            self._flush.set()
        return itemids

    def _add(self, item: PollItem, v: float | int | str, clock_ns: int) -> None:
        clock, ns = divmod(clock_ns, 1_000_000_000)
        b = self._batch
        vt = item.value_type
        if vt == ValueType.FLOAT:
            b.floats.append((item.itemid, clock, ns, float(v)))
        elif vt == ValueType.UNSIGNED:
            b.uints.append((item.itemid, clock, ns, int(v)))
        elif vt == ValueType.CHAR:
            b.strs.append((item.itemid, clock, ns, str(v)))
        elif vt == ValueType.TEXT:
            b.texts.append((item.itemid, clock, ns, str(v)))
        else:
            b.logs.append((item.itemid, clock, ns, 0, "", 0, str(v), 0))
        self.stats.values += 1
        if len(b) >= self.s.flush_values:
            self._flush.set()

    def _set_state(self, item: PollItem, state: int, error: str) -> None:
        """The one place an item's state changes: 0 normal, 1 not supported (with why)."""
        if state:
            self.stats.not_supported += 1
        if self._states.get(item.itemid, (0, "")) == (state, error):
            return
        if state:
            log.info("item %s of host %s is not supported: %s", item.key, item.host, error)
        elif self._states.get(item.itemid, (0, ""))[0]:
            log.info("item %s of host %s is supported again", item.key, item.host)
        self._states[item.itemid] = (state, error)
        self._state_changes[item.itemid] = (state, error, int(self.clock()))

    def item_state(self, itemid: int) -> tuple[int, str]:
        return self._states.get(itemid, (0, ""))

    def _interface_ok(self, st: InterfaceState) -> None:
        if st.available == Availability.AVAILABLE and not st.errors_from and not st.error:
            return
        if st.errors_from or st.available == Availability.UNAVAILABLE:
            log.info("interface %d of host %d is available again", st.interfaceid, st.hostid)
        st.available, st.error, st.errors_from, st.disable_until = Availability.AVAILABLE, "", 0, 0
        self._iface_changes.add(st.interfaceid)

    def _interface_error(self, st: InterfaceState, item: PollItem, message: str) -> None:
        now = int(self.clock())
        self.stats.network_errors += 1
        if st.disable_until > now:  # another poll of the same interface failed first: already backing off
            return
        if not st.errors_from:
            st.errors_from = now
        if now - st.errors_from < self.s.unreachable_period:
            st.disable_until = now + self.s.unreachable_delay
            log.warning("%s is unreachable (item %s of host %s): %s; trying again in %d s", _where(item.interface),
                        item.key, item.host, message, self.s.unreachable_delay)
        else:
            if st.available != Availability.UNAVAILABLE:
                log.warning("%s is unavailable after %d s of errors (host %s): %s; trying every %d s",
                            _where(item.interface), now - st.errors_from, item.host, message,
                            self.s.unavailable_delay)
            st.available = Availability.UNAVAILABLE
            st.disable_until = now + self.s.unavailable_delay
        st.error = message
        self._iface_changes.add(st.interfaceid)

    # --- background writers ----------------------------------------------------------------------

    async def _flusher(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(self._flush.wait(), self.s.flush_interval)
            except TimeoutError:
                pass
            self._flush.clear()
            await self._flush_values()

    async def _flush_values(self) -> None:
        if not len(self._batch):
            return
        batch, self._batch = self._batch, WriteBatch()
        try:
            await self.submit(batch)
        except StoreError as e:
            log.warning("%d polled values could not be stored: %s", len(batch), e)

    async def _state_writer(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except TimeoutError:
                pass
            await self._write_states()

    async def _write_states(self) -> None:
        items, self._state_changes = self._state_changes, {}
        ifaces, self._iface_changes = self._iface_changes, set()
        if self.unsupported is not None:  # the trigger engine records item states (and their internal events)
            bad = [(i, c, e) for i, (s, e, c) in items.items() if s == 1]
            if bad:
                self.unsupported(bad)
            items = {}
        rows = [(i, s, e, c) for i, (s, e, c) in items.items()]
        irows = [(st.interfaceid, st.hostid, st.type, st.available, st.error, st.errors_from, st.disable_until)
                 for iid in ifaces if (st := self.interfaces.get(iid)) is not None]
        if not rows and not irows:
            return
        try:
            await asyncio.to_thread(self.repo.save_item_states, rows)
            await asyncio.to_thread(self.repo.save_interface_states, irows)
        except Exception as e:  # the database is away: keep the changes for the next try
            log.warning("cannot record item and interface states (will retry): %s", str(e).splitlines()[0])
            for i, v in items.items():
                self._state_changes.setdefault(i, v)
            self._iface_changes |= ifaces

    async def _reloader(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self.s.config_refresh)
            except TimeoutError:
                pass
            if stop.is_set():
                return
            try:
                if await asyncio.to_thread(self.repo.version) != self.version:
                    self.load(await asyncio.to_thread(self.repo.poll_config))
            except Exception as e:  # keep polling with the configuration we have
                log.warning("pollers cannot reload the configuration: %s", str(e).splitlines()[0])


def _default_timeout(item: PollItem, default: float) -> float:
    return default


def _where(itf: PollInterface | None) -> str:
    return f"interface [{itf.address}]:{itf.port}" if itf is not None else "the item's target"


@dataclass
class Pollers:
    """The running pollers of `vigil server`: the scheduler (for ingest's `received` and traps) and how
    to stop them."""

    scheduler: Scheduler
    stop: Callable[[], Awaitable[None]]


def start(settings: Settings, repo: ConfigRepo, submit: Callable[[WriteBatch], Awaitable[None]],
          unsupported: Callable[[list[tuple[int, int, str]]], None] | None = None,
          lld: Callable[[int, str, int], None] | None = None,
          follow: Callable[[Callable[[], PollConfig], Callable[[PollConfig], None]], None] | None = None,
          ) -> Pollers | None:
    """Start the pollers of `vigil server` on the running loop; None when VIGIL_POLLERS is 0. Their
    `stop()` hands their last values to `submit`. `unsupported`: the trigger engine's, which then keeps
    item_state (see Scheduler). `follow`: the ingest ConfigCache's (ConfigCache.follow): the pollers'
    configuration is then loaded here, before they start, and reloaded with ingest's snapshot, so a
    trapper value ingest accepts under a configuration reaches the dependent items it has there."""
    from vigil.server.pollers import external, http, jmx, nagios, simple, ssh

    if settings.pollers == 0:
        log.info("pollers: off (VIGIL_POLLERS=0)")
        return None
    http.configure(settings.http_pollers, settings.ssl_ca_file)
    simple.configure(settings.fping, settings.pingers)
    ssh.configure(settings.data_dir, settings.ssh_key_location)
    jmx.configure(settings.java_gateway, settings.java_pollers)
    nagios.configure(settings.nagios_plugins)
    external.configure(settings.external_scripts)
    from vigil.server.pollers.internal import InternalPoller

    pollers = {**default_pollers(settings.ipmi_pollers), ItemType.INTERNAL: InternalPoller(repo)}
    sched = Scheduler(repo, submit, PollerSettings(
        pollers=settings.pollers, timeout=settings.timeout, unreachable_period=settings.unreachable_period,
        unavailable_delay=settings.unavailable_delay, unreachable_delay=settings.unreachable_delay,
        config_refresh=settings.config_refresh), pollers=pollers, unsupported=unsupported, lld=lld)
    if follow is not None:
        sched.follow(follow)
    halt = asyncio.Event()
    task = asyncio.create_task(sched.run(halt), name="pollers")
    checks = asyncio.create_task(check_now_loop(repo, sched, halt), name="check now")

    async def stop() -> None:
        halt.set()
        try:
            await task
        except Exception:
            log.exception("the pollers failed")
        finally:
            await checks
            http.shutdown()

    return Pollers(sched, stop)


CHECK_NOW_EVERY = 1.0  # seconds between looks at the task table (zabbix_server's task manager: 5 s)


async def check_now_loop(repo: ConfigRepo, sched: Scheduler, stop: asyncio.Event,
                         interval: float = CHECK_NOW_EVERY) -> None:
    """Take the check now tasks of the server's own items (queued by the web UI or the API, in any
    process: server/store/tasks.py) and poll those items at once. Items of hosts monitored by a proxy
    are left to the reply to that proxy's `proxy data`."""
    from vigil.server.store import tasks

    failing = False
    while not stop.is_set():
        try:
            itemids = await asyncio.to_thread(tasks.take_local_check_now, repo.engine)
        except Exception as e:  # the database is away: the tasks wait
            if not failing:
                log.warning("cannot read the check now tasks: %s", e)
            failing = True
        else:
            failing = False
            if itemids:
                n = sched.check_now(itemids)
                log.info("check now: %d of %d items rescheduled", n, len(itemids))
        try:
            await asyncio.wait_for(stop.wait(), interval)
        except TimeoutError:
            pass
