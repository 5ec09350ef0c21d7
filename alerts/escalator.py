"""The escalator: what actions do after an event, step by step (Zabbix's escalator process).

`notify(Notice)` (the trigger engine's hook) only queues. `run(stop)` takes the queue and the due
escalations on a timer; `process(now)` does one round and is what tests call with their own `now`.

- A problem event matching an enabled action gets an escalation row; step 1 runs at once, each
  later step when the one before has lasted its duration (the shortest step_duration of the
  step's operations, else the action's), until no operation has a later step or the problem is
  resolved. Rows hold the step and when the next one is due, so a restarted server goes on.
- While every host of the problem is in maintenance, an action with pause_suppressed keeps its
  escalation asleep (nothing is sent) and looks again every `maintenance_recheck` seconds; after
  the maintenance the due step runs.
- The problem's OK event runs the recovery operations once (if a step had run), then the row goes.
- A ProblemUpdate (acknowledge, message, severity change, close) runs the update operations of the
  actions escalating that problem.
- Messages: each user (or member of a user group) of the operation, each of the user's enabled
  media (only the operation's media type, if it names one) whose severity filter takes the event's
  severity and whose active period covers now: an alert row (AlertLog.create), its text rendered
  with the alert id known ({ALERT.ID}), then dispatched. A template that does not render fails that
  alert, with the reason in the alert log. For a webhook media type with a `body` template the
  alert's message is that body rendered with JSON-escaped values ({ALERT.SUBJECT} and
  {ALERT.MESSAGE} being the operation's rendered subject and message), which delivery posts as is.
- Remote commands run on the server or on each host's agent in a small pool; the result is an
  alerts row of alerttype 1 (subject: the command, message: its output, error: why it failed).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import tzinfo
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from vigil.alerts import commands, macros
from vigil.alerts.actions import (
    ConditionError,
    EventFacts,
    PeriodError,
    action_matches,
    period_covers,
    plan_step,
    user_macros,
)
from vigil.alerts.maintenance import in_maintenance
from vigil.server.config.alerting import ActionSpec, OperationSpec, UserSpec
from vigil.server.config.autoreg import HOST_OPERATIONS
from vigil.server.config.tables import AlertStatus, EventSource, MediaKind
from vigil.server.store import tasks
from vigil.server.store.alertlog import NewAlert
from vigil.server.store.escalations import (
    ACTIVE,
    COMPLETED,
    RECOVERY,
    SLEEP,
    Escalation,
    EscalationStore,
    EventRow,
)
from vigil.server.triggers.events import Event, Notice, ProblemUpdate

log = logging.getLogger("vigil.alerts.escalator")

SEND_MESSAGE = 0
REMOTE_COMMAND = 1
NOTIFY_ALL_INVOLVED = 11  # recovery / update operations: everyone this action sent the problem to


class Dispatcher(Protocol):
    def dispatch(self, alertid: int) -> None: ...


class AlertCreator(Protocol):
    def create(self, alert: Any) -> int: ...


class Escalator:
    def __init__(self, engine: Engine, repo: Any, alertlog: AlertCreator, dispatcher: Dispatcher, *,
                 interval: float = 1.0, maintenance_recheck: int = 60, command_timeout: float = 30.0,
                 queue_size: int = 100_000, command_workers: int = 2, tz: tzinfo | None = None,
                 proxy_command_ttl: int = 600) -> None:
        self.store = EscalationStore(engine)
        self.repo = repo
        self.alertlog = alertlog
        self.dispatcher = dispatcher
        self.interval = interval
        self.maintenance_recheck = maintenance_recheck
        self.command_timeout = command_timeout
        self.proxy_command_ttl = proxy_command_ttl
        self.tz = tz
        self._queue: deque[Notice] = deque()
        self._queue_size = queue_size
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._cfg: Any = None
        self._cfg_version: int | None = None
        self._macro_cache: dict[tuple[int, int | None], dict[str, str]] = {}
        self._pool = ThreadPoolExecutor(command_workers, thread_name_prefix="vigil-command")
        self._commands: list[Future[None]] = []
        self.dropped = 0
        self.alerts_created = 0

    @classmethod
    def from_settings(cls, engine: Engine, repo: Any, alertlog: AlertCreator, dispatcher: Dispatcher,
                      settings: Any) -> Escalator:
        """The escalator `vigil up` / `vigil server` run, with the VIGIL_ESCALATOR_* settings."""
        return cls(engine, repo, alertlog, dispatcher, interval=settings.escalator_interval,
                   maintenance_recheck=settings.maintenance_recheck,
                   command_timeout=settings.remote_command_timeout, proxy_command_ttl=settings.proxy_command_ttl)

    # --- the engine's hook and the loop --------------------------------------------------------

    def notify(self, notice: Notice) -> None:
        """Queue an event or problem update; never blocks. A full queue drops its oldest notice."""
        with self._lock:
            if len(self._queue) >= self._queue_size:
                old = self._queue.popleft()
                self.dropped += 1
                log.warning("escalator queue full (%d): dropped %s; %d dropped so far", self._queue_size,
                            old, self.dropped)
            self._queue.append(notice)
        self._wake.set()

    def run(self, stop: threading.Event) -> None:
        log.info("escalator started")
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                n = self.process()
                if n:
                    log.info("escalator: %d notices and escalation steps in %.3f s", n, time.monotonic() - t0)
            except Exception:
                log.exception("escalator round failed; trying again in %.1f s", self.interval)
            self._wake.wait(self.interval)
            self._wake.clear()
        self._pool.shutdown(wait=True)
        log.info("escalator stopped")

    def process(self, now: int | None = None) -> int:
        """One round: every queued notice, then every escalation due at `now`. Returns the count."""
        now = int(time.time()) if now is None else now
        cfg = self.config()
        done = 0
        while True:
            with self._lock:
                if not self._queue:
                    break
                notice = self._queue.popleft()
            try:
                if isinstance(notice, Event):
                    self._on_event(notice, cfg, now)
                else:
                    self._on_update(notice, cfg, now)
            except sa.exc.DBAPIError:
                # The database is away: keep the notice for the next round (escalation rows are
                # created only once, so handling it again later repeats nothing already done).
                with self._lock:
                    self._queue.appendleft(notice)
                raise
            except Exception:
                log.exception("escalator: cannot handle %s", notice)
            done += 1
        for esc in self.store.due(now):
            try:
                self._advance(esc, cfg, now)
            except Exception:
                log.exception("escalator: escalation %d (action %d, event %d) failed", esc.escalationid,
                              esc.actionid, esc.eventid)
            done += 1
        return done

    def wait_commands(self, timeout: float = 60.0) -> None:
        """Wait for the remote commands started so far (tests, shutdown)."""
        pending, self._commands = self._commands, []
        for f in pending:
            f.result(timeout)

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def config(self) -> Any:
        v = self.repo.version()
        if self._cfg is None or v != self._cfg_version:
            self._cfg = self.repo.alerting()
            self._cfg_version = v
        return self._cfg

    # --- notices -----------------------------------------------------------------------------

    def _on_event(self, ev: Event, cfg: Any, now: int) -> None:
        if ev.value == 0:
            problems = list(ev.resolves) or self.store.resolved_by(ev.eventid)
            for esc in self.store.of_events(problems):
                if esc.acknowledgeid is None and esc.status != RECOVERY:
                    esc = esc.but(status=RECOVERY, r_eventid=ev.eventid, nextcheck=now)
                    self.store.save(esc)
                    self._advance(esc, cfg, now)
            return
        row = self.store.event(ev.eventid)
        hostids = tuple(dict.fromkeys((*(h[0] for h in row.hosts), *ev.hostids))) if row else ev.hostids
        names = _host_names(cfg)
        hosts = tuple(names[h] for h in hostids if h in names)
        groups = tuple(dict.fromkeys(g for h in hostids for g in cfg.host_groups.get(h, ())))
        details = dict(ev.details)
        if ev.source == EventSource.AUTOREGISTRATION:  # the host may not exist: its name is the event's
            hosts = (details.get("host", ev.name),)
        facts = EventFacts(source=ev.source, clock=ev.clock, severity=ev.severity, name=ev.name,
                           triggerid=ev.objectid if ev.object == 0 else None,
                           trigger_name=row.trigger_name if row else "", hostids=hostids, hosts=hosts,
                           groups=groups, tags=ev.tags or (row.tags if row else ()),
                           suppressed=self._suppressed(hostids, cfg, now),
                           macros=self._user_macros(row) if row else {},
                           host_metadata=details.get("host_metadata", ""), proxy=details.get("proxy", ""))
        for actionid in sorted(cfg.actions):
            action = cfg.actions[actionid]
            try:
                if not action_matches(action, facts, self.tz):
                    continue
            except ConditionError as e:
                log.error("action %r: %s; the action is skipped for event %d", action.name, e, ev.eventid)
                continue
            esc = self.store.create(actionid, ev.eventid, now)
            if esc is not None:
                log.info("action %r escalates %s %d", action.name,
                         "autoregistration event" if ev.source == EventSource.AUTOREGISTRATION else "problem",
                         ev.eventid)
                self._advance(esc, cfg, now, row)

    def _on_update(self, u: ProblemUpdate, cfg: Any, now: int) -> None:
        actionids = {e.actionid for e in self.store.of_events([u.eventid]) if e.acknowledgeid is None}
        for actionid in sorted(actionids):
            action = cfg.actions.get(actionid)
            if action is None or not action.update_operations:
                continue
            esc = self.store.create(actionid, u.eventid, now, acknowledgeid=u.acknowledgeid)
            if esc is not None:
                self._advance(esc, cfg, now)

    # --- escalation steps --------------------------------------------------------------------

    def _advance(self, esc: Escalation, cfg: Any, now: int, row: EventRow | None = None) -> None:
        action: ActionSpec | None = cfg.actions.get(esc.actionid)
        if row is None or row.eventid != esc.eventid:
            row = self.store.event(esc.eventid)
        if action is None or not action.enabled or row is None:
            log.info("escalation %d ends: its action or event is gone or the action is disabled", esc.escalationid)
            self.store.delete(esc.escalationid)
            return
        if esc.acknowledgeid is not None:
            update = next((u for u in row.updates if u.acknowledgeid == esc.acknowledgeid), None)
            if update is not None:
                self._operations(action, esc, row, action.update_operations, "update", now, update)
            self.store.delete(esc.escalationid)
            return
        if esc.status != RECOVERY and row.r_eventid is not None:
            # Resolved while nobody told us (a restart between the OK event and its notice).
            esc = esc.but(status=RECOVERY, r_eventid=row.r_eventid)
        if esc.status == RECOVERY:
            if esc.esc_step > 0 and action.recovery_operations:
                self._operations(action, esc, row, action.recovery_operations, "recovery", now)
            self.store.delete(esc.escalationid)
            return
        if esc.status == COMPLETED:
            return
        if action.pause_suppressed and self._suppressed(tuple(h[0] for h in row.hosts), cfg, now):
            if esc.status != SLEEP:
                log.info("escalation %d (problem %d) sleeps: its hosts are in maintenance", esc.escalationid,
                         esc.eventid)
            self.store.save(esc.but(status=SLEEP, nextcheck=now + self.maintenance_recheck))
            return
        step = esc.esc_step + 1
        try:
            plan = plan_step(action, step, now, self._user_macros(row))
        except ConditionError as e:
            log.error("action %r: %s; escalation %d stops", action.name, e, esc.escalationid)
            self.store.save(esc.but(status=COMPLETED, esc_step=step, nextcheck=now))
            return
        if plan.next_at is None:
            self.store.save(esc.but(status=COMPLETED, esc_step=step, nextcheck=now))
        else:
            self.store.save(esc.but(status=ACTIVE, esc_step=step, nextcheck=plan.next_at))
        self._operations(action, esc.but(esc_step=step), row, plan.operations, "problem", now)

    def _suppressed(self, hostids: Iterable[int], cfg: Any, now: int) -> bool:
        """Whether every host of the problem is in maintenance (one host outside is enough to alert)."""
        ids = list(hostids)
        if not ids or not cfg.maintenances:
            return False
        names = _host_names(cfg)
        return all(in_maintenance(names.get(h, ""), cfg.host_groups.get(h, ()), cfg.maintenances, now, self.tz)
                   for h in ids)

    # --- operations --------------------------------------------------------------------------

    def _operations(self, action: ActionSpec, esc: Escalation, row: EventRow, ops: list[OperationSpec], kind: str,
                    now: int, update: Any = None) -> None:
        for op in ops:
            try:
                if op.kind == REMOTE_COMMAND:
                    self._command(action, esc, row, op, kind, now, update)
                elif op.kind in HOST_OPERATIONS:
                    continue  # an autoregistration action's host operation: the server ran it
                else:
                    self._message(action, esc, row, op, kind, now, update)
            except Exception:
                log.exception("action %r: a %s operation of escalation %d failed", action.name, kind,
                              esc.escalationid)

    def _context(self, row: EventRow, esc: Escalation, kind: str, now: int, update: Any,
                 cfg: Any) -> macros.MessageContext:
        upd = None
        if update is not None:
            author = cfg.users.get(update.userid) if update.userid is not None else None
            upd = macros.UpdateFacts(update.userid, update.clock, update.message, update.action,
                                     _fullname(author) if author else "")
        r_clock = row.r_clock
        r_eventid = row.r_eventid if row.r_eventid is not None else (esc.r_eventid if kind == "recovery" else None)
        if kind == "recovery" and r_clock is None:
            r_clock = now
        host_macros = self._user_macros(row)
        return macros.MessageContext(
            eventid=row.eventid, clock=row.clock, name=row.name, severity=row.severity, value=row.value,
            acknowledged=row.acknowledged, tags=row.tags, triggerid=row.triggerid, trigger_name=row.trigger_name,
            trigger_expression=row.trigger_expression, trigger_value=row.trigger_value,
            hosts=[macros.HostFacts(h, host, name) for h, host, name in row.hosts],
            items=[macros.ItemFacts(i.itemid, i.name, i.key, i.value, i.lastvalue, i.units) for i in row.items],
            recovery_eventid=r_eventid, recovery_clock=r_clock, update=upd, user_macros=host_macros, now=now)

    def _user_macros(self, row: EventRow) -> dict[str, str]:
        """The user macros of the event's (first) host: its own, its templates', the global ones (read once
        per configuration version)."""
        if not row.hosts or not hasattr(self.repo, "macros_for"):
            return {}
        hostid = row.hosts[0][0]
        key = (hostid, self._cfg_version)
        if key not in self._macro_cache:
            try:
                macros_ = dict(self.repo.macros_for(hostid))
            except Exception:
                log.exception("cannot read the user macros of host %d", hostid)
                return {}
            if len(self._macro_cache) > 10_000:
                self._macro_cache.clear()
            self._macro_cache[key] = macros_
        return dict(self._macro_cache[key])

    def _recipients(self, esc: Escalation, op: OperationSpec, cfg: Any) -> list[tuple[int, int | None]]:
        """(userid, mediatypeid or None for every media of the user), in order, without repeats."""
        if op.kind == NOTIFY_ALL_INVOLVED:
            return [(u, m) for u, m in self.store.involved(esc.actionid, esc.eventid)]
        users: list[int] = []
        for name in op.users:
            uid = cfg.user_ids.get(name)
            if uid is None:
                log.error("operation names user %r, who does not exist", name)
            else:
                users.append(uid)
        for name in op.groups:
            gid = cfg.group_ids.get(name)
            if gid is None or gid not in cfg.user_groups:
                log.error("operation names user group %r, which does not exist", name)
                continue
            users.extend(cfg.user_groups[gid][1])
        mt = None
        if op.media_type:
            mt = cfg.media_type_ids.get(op.media_type)
            if mt is None:
                log.error("operation names media type %r, which does not exist", op.media_type)
                return []
        return [(u, mt) for u in dict.fromkeys(users)]

    def _message(self, action: ActionSpec, esc: Escalation, row: EventRow, op: OperationSpec, kind: str, now: int,
                 update: Any) -> None:
        cfg = self._cfg
        for userid, only_mt in self._recipients(esc, op, cfg):
            user: UserSpec | None = cfg.users.get(userid)
            if user is None:
                continue
            sent = 0
            for media in user.medias:
                mtid = cfg.media_type_ids.get(media.media_type)
                mt = cfg.media_types.get(mtid) if mtid is not None else None
                if mt is None or (only_mt is not None and mtid != only_mt):
                    continue
                if not media.enabled or not mt.enabled or not (media.severity >> row.severity) & 1:
                    continue
                period = media.period
                if "{$" in period:  # Zabbix resolves global macros in a media's period
                    period = user_macros(period, self.store.global_macros())
                try:
                    if not period_covers(period, now, self.tz):
                        continue
                except PeriodError as e:
                    log.error("user %r, media %r: %s", user.username, media.media_type, e)
                    continue
                self._send(action, esc, row, op, kind, now, update, userid, user, mtid, mt, media.send_to)
                sent += 1
            if not sent:
                log.info("action %r: user %r has no media that takes this %s message now", action.name,
                         user.username, kind)

    def _send(self, action: ActionSpec, esc: Escalation, row: EventRow, op: OperationSpec, kind: str, now: int,
              update: Any, userid: int, user: UserSpec, mtid: int, mt: Any, sendto: str) -> None:
        default_subject, default_message = macros.default_templates(kind, mt.params)
        subject_t = op.subject or default_subject
        message_t = op.message or default_message
        eventid = esc.r_eventid if kind == "recovery" and esc.r_eventid is not None else row.eventid
        ctx = self._context(row, esc, kind, now, update, self._cfg)
        ctx.alert_sendto, ctx.user_fullname = sendto, _fullname(user)
        body = str(mt.params.get("body") or "") if mt.kind == MediaKind.WEBHOOK else ""

        def text() -> tuple[str, str]:
            ctx.alert_subject = ctx.alert_message = ""
            subject = macros.render(subject_t, ctx)
            ctx.alert_subject = subject
            message = macros.render(message_t, ctx)
            if body.strip():
                # A webhook with a body template sends the alert's message as its body (alerts/media/webhook.py):
                # the body is rendered here, every value JSON-string-escaped so the body stays JSON.
                ctx.alert_message = message
                message = macros.render(body, ctx, json_escape=True)
            return subject, message

        # Rendered once before the row exists, so a row is never without its text (were the server to
        # stop right after writing it, delivery would still send a whole message), then again with
        # the alert id the row got ({ALERT.ID}, the id delivery puts in X-Vigil-Alert-Id / Message-ID).
        error = ""
        try:
            subject, message = text()
        except macros.TemplateFailure as e:
            error, subject, message = str(e), subject_t, message_t
        def with_id(alertid: int) -> tuple[str, str] | None:
            nonlocal error
            if error:
                return None
            ctx.alert_id = alertid
            try:
                return text()
            except macros.TemplateFailure as e:
                error = str(e)
                return None

        alertid = self.alertlog.create(NewAlert(
            actionid=esc.actionid, eventid=eventid, p_eventid=row.eventid if eventid != row.eventid or kind == "update"
            else None, userid=userid, mediatypeid=mtid, sendto=sendto, subject=subject, message=message,
            esc_step=esc.esc_step, clock=now, alerttype=0), with_id)
        self.alerts_created += 1
        if error:
            log.error("action %r: alert %d not sent: %s", action.name, alertid, error)
            self.store.finish_alert(alertid, AlertStatus.FAILED, error, now)
            return
        try:
            self.dispatcher.dispatch(alertid)
        except Exception:
            # The row stays queued in the alert log: delivery picks up what it holds when it starts.
            log.exception("alert %d: cannot hand it to delivery; it stays queued in the alert log", alertid)

    def _command(self, action: ActionSpec, esc: Escalation, row: EventRow, op: OperationSpec, kind: str, now: int,
                 update: Any) -> None:
        ctx = self._context(row, esc, kind, now, update, self._cfg)
        command = macros.expand(op.command, ctx)
        targets: list[tuple[str, tuple[str, int] | None]] = []
        proxied: dict[str, tuple[int, int]] = {}  # target -> (proxyid, hostid): the host's proxy runs it
        if op.execute_on == 1:
            targets.append(("server", None))
        else:
            for hostid, host, _ in row.hosts:
                targets.append((f"agent of {host}", self.store.agent_interface(hostid)))
                if (proxyid := tasks.host_proxy(self.store.engine, hostid)) is not None:
                    proxied[f"agent of {host}"] = (proxyid, hostid)
            if not targets:
                targets.append(("agent", None))
        eventid = esc.r_eventid if kind == "recovery" and esc.r_eventid is not None else row.eventid
        for where, address in targets:
            sendto = where if address is None else f"{address[0]}:{address[1]}"
            alertid = self.alertlog.create(NewAlert(
                actionid=esc.actionid, eventid=eventid, p_eventid=row.eventid if eventid != row.eventid else None,
                userid=None, mediatypeid=None, sendto=sendto, subject=command[:255], message="",
                esc_step=esc.esc_step, clock=now, alerttype=1))
            self.alerts_created += 1
            if where in proxied:  # a task for the proxy; its result settles the alert (server/store/tasks.py)
                tasks.queue_command(self.store.engine, *proxied[where], alertid, command, now,
                                    ttl=self.proxy_command_ttl)
                continue
            if where != "server" and address is None:
                self.store.finish_alert(alertid, AlertStatus.FAILED, "the host has no agent interface to run the "
                                        "command on: add one, or run the command on the server", now)
                continue
            self._commands.append(self._pool.submit(self._run_command, alertid, command, address))

    def _run_command(self, alertid: int, command: str, address: tuple[str, int] | None) -> None:
        if address is None:
            r = commands.run_on_server(command, self.command_timeout)
        else:
            r = commands.run_on_agent(address[0], address[1], command, self.command_timeout)
        status = AlertStatus.SENT if r.ok else AlertStatus.FAILED
        output = r.output if r.exit_code is None else f"{r.output}\n(exit code {r.exit_code})".lstrip("\n")
        self.store.finish_alert(alertid, status, r.error, int(time.time()), message=output)
        if not r.ok:
            log.error("remote command of alert %d failed: %s", alertid, r.error)


def _fullname(user: UserSpec) -> str:
    name = f"{user.name} {user.surname}".strip()
    return f"{name} ({user.username})" if name else user.username


def _host_names(cfg: Any) -> dict[int, str]:
    return {hid: name for name, hid in cfg.host_ids.items()}
