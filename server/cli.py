"""`vigil`: the admin command. Settings come from VIGIL_* variables (see docs/settings.md)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vigil.server.settings import Settings, SettingsError

log = logging.getLogger("vigil")


class CliError(Exception):
    """A user error: printed as `vigil: message` with exit code 1."""


def parse_time(text: str, now: float | None = None) -> int:
    """Unix seconds, `now`, `now-1h`/`-30m` style offsets, or an ISO date/time (UTC unless given)."""
    from vigil.server.config.durations import seconds

    now = time.time() if now is None else now
    s = text.strip()
    if s.lstrip("-").isdigit() and not s.startswith("-"):
        return int(s)
    if s == "now":
        return int(now)
    rel = s[3:] if s.startswith("now") else s
    if rel.startswith(("-", "+")):
        try:
            delta = seconds(rel[1:], "time")
        except ValueError:
            raise CliError(f"cannot read time {text!r}: use unix seconds, now-1h, -30m or 2026-11-22T10:00") from None
        return int(now - delta if rel[0] == "-" else now + delta)
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise CliError(f"cannot read time {text!r}: use unix seconds, now-1h, -30m or 2026-11-22T10:00") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp())


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as e:
        raise CliError(str(e)) from None


def _engine(settings: Settings, *, migrated: bool = True):  # type: ignore[no-untyped-def]
    from vigil.server.config.migrate import check_current, engine_for

    engine = engine_for(settings.database_url)
    if migrated:
        try:
            check_current(engine)
        except RuntimeError as e:
            raise CliError(str(e)) from None
    return engine


def _repo(settings: Settings):  # type: ignore[no-untyped-def]
    from vigil.server.config.repo import ConfigRepo

    return ConfigRepo(_engine(settings))


# --- commands -----------------------------------------------------------------------------------


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from vigil.server.config.migrate import current_revision, head_revision, upgrade

    settings = _settings()
    engine = _engine(settings, migrated=False)
    before = current_revision(engine)
    upgrade(engine)
    after = current_revision(engine)
    where = settings.database_url if not settings.is_sqlite else settings.database_url[len("sqlite:///"):]
    if before == after:
        print(f"database {where} is up to date at migration {after}")
    else:
        print(f"database {where} upgraded from {before or 'empty'} to {after} (head {head_revision()})")
    return 0


def cmd_db_current(args: argparse.Namespace) -> int:
    from vigil.server.config.migrate import current_revision, head_revision

    engine = _engine(_settings(), migrated=False)
    print(f"current: {current_revision(engine) or 'none'}; code expects: {head_revision()}")
    return 0


def load_document(path: str) -> Any:
    import yaml

    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as e:
        raise CliError(f"cannot read {path}: {e.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise CliError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', e)}") from None


def cmd_config_import(args: argparse.Namespace) -> int:
    from vigil.server.config.model import ConfigError, doc_from_dict

    raw = load_document(args.file)
    try:
        doc = doc_from_dict(raw)
        report = _repo(_settings()).apply(doc, delete_missing=args.delete_missing)
    except ConfigError as e:
        raise CliError(f"{args.file}: {e}; nothing was imported") from None
    print(f"imported {args.file}: {report}")
    return 0


def cmd_config_export(args: argparse.Namespace) -> int:
    import yaml

    text = yaml.safe_dump(_repo(_settings()).export(), sort_keys=False, allow_unicode=True)
    if args.output and args.output != "-":
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_host_create(args: argparse.Namespace) -> int:
    from vigil.server.config.model import ConfigError, doc_from_dict

    try:
        doc = doc_from_dict({"hosts": [{"host": args.host, "groups": args.group or [],
                                        "templates": args.template or []}]})
        repo = _repo(_settings())
        if repo.host_exists(args.host):
            raise CliError(f"host {args.host!r} exists already")
        report = repo.apply(doc)
    except ConfigError as e:
        raise CliError(str(e)) from None
    print(f"host {args.host} created ({report})")
    return 0


def cmd_host_delete(args: argparse.Namespace) -> int:
    if not _repo(_settings()).delete_host(args.host):
        raise CliError(f"host {args.host!r} not found")
    print(f"host {args.host} deleted with its items and their history links")
    return 0


def cmd_host_link(args: argparse.Namespace) -> int:
    from vigil.server.config.model import ConfigError

    try:
        report = _repo(_settings()).link_template(args.host, args.template, link=args.command_name == "link")
    except ConfigError as e:
        raise CliError(str(e)) from None
    to = "to" if args.command_name == "link" else "from"
    print(f"{args.command_name}ed {args.template} {to} {args.host}: {report}")
    return 0


def cmd_item_create(args: argparse.Namespace) -> int:
    from vigil.server.config.model import ConfigError, item_from_doc

    item: dict[str, Any] = {"key": args.key, "type": args.type, "value_type": args.value_type}
    for name in ("units", "delay", "history", "trends", "name"):
        if getattr(args, name) is not None:
            item[name] = getattr(args, name)
    if args.tag:
        tags = []
        for t in args.tag:
            k, _, v = t.partition("=")
            tags.append({"tag": k, "value": v})
        item["tags"] = tags
    try:
        spec = item_from_doc(item, "item")
        report = _repo(_settings()).upsert_item(args.host, spec)
    except ConfigError as e:
        raise CliError(str(e)) from None
    print(f"item {args.key} on {args.host}: {report}")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    from vigil.server.config.tables import TREND_TABLES
    from vigil.server.store import open_store

    settings = _settings()
    repo = _repo(settings)
    found = repo.item(args.host, args.key)
    if found is None:
        raise CliError(f"no item {args.key!r} on host {args.host!r}")
    itemid, vt = found
    now = time.time()
    start = parse_time(args.time_from, now) if args.time_from else int(now) - 86400
    end = parse_time(args.time_till, now) if args.time_till else int(now)
    if start > end:
        raise CliError(f"--from ({start}) is after --to ({end})")
    store = open_store(settings.database_url)
    out = sys.stdout
    try:
        if args.trends:
            if vt not in TREND_TABLES:
                raise CliError(f"{args.key} holds {vt.name.lower()} values: only float and unsigned items have trends")
            store.rollup_trends(int(now))
            for tr in store.trends(itemid, vt, start, end):
                out.write(f"{tr.clock}\t{tr.num}\t{_fmt(tr.min)}\t{_fmt(tr.avg)}\t{_fmt(tr.max)}\n")
        else:
            for clock, ns, value in store.history(itemid, vt, start, end, args.limit):
                out.write(f"{clock}\t{ns}\t{_fmt(value)}\n")
    finally:
        store.close()
    return 0


def _severity(text: str) -> int:
    from vigil.server.config.tables import SEVERITY_NAMES

    s = text.strip().lower().replace("_", " ")
    if s.isdigit() and 0 <= int(s) <= 5:
        return int(s)
    if s in SEVERITY_NAMES:
        return int(SEVERITY_NAMES[s])
    raise CliError(f"severity {text!r} is not one of {', '.join(repr(n) for n in SEVERITY_NAMES)} (or 0-5)")


def _severity_name(n: int) -> str:
    from vigil.server.config.tables import SEVERITY_NAMES

    return next((name for name, v in SEVERITY_NAMES.items() if v == n), str(n))


def cmd_problems(args: argparse.Namespace) -> int:
    from vigil.server.store.events import EventStore

    settings = _settings()
    severity = _severity(args.severity) if args.severity is not None else None
    engine = _engine(settings)
    try:
        rows = EventStore(engine).problems(host=args.host, severity=severity)
    finally:
        engine.dispose()
    out = sys.stdout
    for p in rows:
        name = p.name.replace("\t", " ").replace("\n", " ")
        out.write(f"{p.eventid}\t{p.clock}\t{_severity_name(p.severity)}\t{p.host}\t{name}\n")
    return 0


def cmd_ack(args: argparse.Namespace) -> int:
    from vigil.server.store.events import (
        ACTION_ACK,
        ACTION_CLOSE,
        ACTION_MESSAGE,
        ACTION_SEVERITY,
        ACTION_UNACK,
        EventError,
        EventStore,
    )

    settings = _settings()
    action = ACTION_UNACK if args.unack else ACTION_ACK
    if args.message:
        action |= ACTION_MESSAGE
    if args.close:
        action |= ACTION_CLOSE
    severity = None
    if args.severity is not None:
        severity = _severity(args.severity)
        action |= ACTION_SEVERITY
    engine = _engine(settings)
    try:
        ackid = EventStore(engine).acknowledge(args.eventid, None, args.message or "", action, severity)
    except EventError as e:
        raise CliError(str(e)) from None
    finally:
        engine.dispose()
    done = ["unacknowledged" if args.unack else "acknowledged"]
    if severity is not None:
        done.append(f"severity set to {_severity_name(severity)}")
    if args.close:
        done.append("closing")
    print(f"problem {args.eventid}: {', '.join(done)} (update {ackid}; a running server applies it)")
    return 0


def _event_id(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"event id {text!r} is not a number: `vigil problems` lists the ids")
    return int(text)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return repr(v) if v != int(v) or abs(v) >= 1e16 else f"{v:.1f}"
    return str(v).replace("\n", "\\n")


def run_async(main: Any) -> int:
    settings = _settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(settings, stop)

    try:
        asyncio.run(runner())
    except RuntimeError as e:
        raise CliError(str(e)) from None
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vigil", description="Vigil: monitoring, metering and logging.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    db.add_parser("upgrade", help="apply all migrations").set_defaults(func=cmd_db_upgrade)
    db.add_parser("current", help="show the schema's migration").set_defaults(func=cmd_db_current)

    cfg = sub.add_parser("config", help="import and export configuration as YAML").add_subparsers(
        dest="config_command", required=True)
    s = cfg.add_parser("import", help="create or update hosts, templates and items from a YAML file")
    s.add_argument("file", help="YAML file, or - for standard input")
    s.add_argument("--delete-missing", action="store_true", help="delete host items not in the file")
    s.set_defaults(func=cmd_config_import)
    s = cfg.add_parser("export", help="print the whole configuration as YAML")
    s.add_argument("-o", "--output", help="write to this file instead of standard output")
    s.set_defaults(func=cmd_config_export)

    host = sub.add_parser("host", help="hosts").add_subparsers(dest="host_command", required=True)
    s = host.add_parser("create", help="create a host")
    s.add_argument("host")
    s.add_argument("--group", action="append", help="host group (repeatable)")
    s.add_argument("--template", action="append", help="template to link (repeatable)")
    s.set_defaults(func=cmd_host_create)
    s = host.add_parser("delete", help="delete a host and its items")
    s.add_argument("host")
    s.set_defaults(func=cmd_host_delete)
    for name in ("link", "unlink"):
        s = host.add_parser(name, help=f"{name} a template (unlink removes the template's items from the host)")
        s.add_argument("host")
        s.add_argument("template")
        s.set_defaults(func=cmd_host_link, command_name=name)

    item = sub.add_parser("item", help="items").add_subparsers(dest="item_command", required=True)
    s = item.add_parser("create", help="create or update an item on a host")
    s.add_argument("host")
    s.add_argument("key")
    s.add_argument("--type", default="trapper", help="trapper (default), agent_active or agent")
    s.add_argument("--value-type", default="float", help="float (default), unsigned, char, text or log")
    s.add_argument("--units")
    s.add_argument("--delay", help="update interval, e.g. 30s (agent items)")
    s.add_argument("--history", help="history retention, e.g. 31d")
    s.add_argument("--trends", help="trend retention, e.g. 365d")
    s.add_argument("--name")
    s.add_argument("--tag", action="append", help="TAG=VALUE (repeatable)")
    s.set_defaults(func=cmd_item_create)

    s = sub.add_parser("history", help="print an item's values: clock<TAB>ns<TAB>value, oldest first")
    s.add_argument("host")
    s.add_argument("key")
    s.add_argument("--from", dest="time_from", help="start: unix seconds, now-1h, or ISO time (default: 24 h ago)")
    s.add_argument("--to", dest="time_till", help="end, inclusive (default: now)")
    s.add_argument("--trends", action="store_true", help="hourly trends: clock<TAB>num<TAB>min<TAB>avg<TAB>max")
    s.add_argument("--limit", type=int, help="at most this many values")
    s.set_defaults(func=cmd_history)

    s = sub.add_parser("problems", help="list open problems: eventid<TAB>clock<TAB>severity<TAB>host<TAB>name")
    s.add_argument("--host", help="only this host's problems (technical host name)")
    s.add_argument("--severity", help="only problems at least this severe: not classified, information, warning, "
                                      "average, high, disaster (or 0-5)")
    s.set_defaults(func=cmd_problems)

    s = sub.add_parser("ack", help="acknowledge an open problem, with a message; close it or change its severity")
    s.add_argument("eventid", type=_event_id, help="the problem's event id (from `vigil problems`)")
    s.add_argument("-m", "--message", help="the message to add")
    s.add_argument("--close", action="store_true", help="close the problem (its trigger must allow manual close)")
    s.add_argument("--severity", help="change the problem's severity (a name or 0-5)")
    s.add_argument("--unack", action="store_true", help="take the acknowledgement back instead")
    s.set_defaults(func=cmd_ack)
    return p


def main(argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    """Run a `vigil` admin command; `parser` is the whole command line (vigil.run.cli adds the processes)."""
    args = (parser or build_parser()).parse_args(argv)
    try:
        return int(args.func(args))
    except CliError as e:
        print(f"vigil: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except ModuleNotFoundError as e:
        if e.name in ("sqlalchemy", "alembic", "psycopg", "yaml", "orjson"):
            print(f"vigil: the server's dependencies are not installed (no module {e.name!r}): "
                  "pip install -e '.[server]'", file=sys.stderr)
            return 1
        raise
    except Exception as e:  # the database is down or similar: say so without a traceback
        from sqlalchemy.exc import OperationalError

        if isinstance(e, OperationalError):
            print(f"vigil: cannot use the database: {e.orig}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
