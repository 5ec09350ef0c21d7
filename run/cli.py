"""The `vigil` command: the admin commands of server/cli.py, and the processes that wire rooms together.

`vigil up`, `vigil server` and `vigil worker` are composed here, the one place allowed to import every
room (ARCHITECTURE.md: a process is composed at its entry point).
"""

from __future__ import annotations

import argparse
import sys

from vigil.server import cli as admin


def cmd_server(args: argparse.Namespace) -> int:
    from vigil.run.alerting import serve_with_alerts

    return admin.run_async(serve_with_alerts)


def cmd_up(args: argparse.Namespace) -> int:
    from vigil.run.up import up

    return admin.run_async(up)


def cmd_proxy(args: argparse.Namespace) -> int:
    """`vigil proxy -c FILE`: a collector for a remote network (proxy/process.py)."""
    from vigil.proxy import conf, process

    try:
        c = conf.load(args.config)
    except conf.ConfError as e:
        raise admin.CliError(str(e)) from None
    if args.print_config:
        print(c.render(), end="")
        return 0
    return process.main(c)


def cmd_worker(args: argparse.Namespace) -> int:
    """A Celery worker for the alert queue: checks the database and the media time-outs, then runs."""
    import logging

    from vigil.alerts import tasks
    from vigil.alerts.delivery import longest_timeout
    from vigil.server.store.alertlog import AlertLog

    settings = admin._settings()
    level = (args.loglevel or settings.log_level).upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise admin.CliError(f"--loglevel {args.loglevel!r}: expected debug, info, warning or error")
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    engine = admin._engine(settings)
    try:
        longest, name = longest_timeout(AlertLog(engine))
    finally:
        engine.dispose()
    cap = tasks.timeout_cap(settings.alert_redelivery)
    if settings.broker_url.startswith(tasks.REDIS_SCHEMES) and longest > cap:
        logging.getLogger("vigil.alerts").warning(
            "media type %r may take %g s (its timeout) but VIGIL_ALERT_REDELIVERY is %g s: a message still being "
            "sent would be handed to a second worker, so its tries are cut off after %g s. Raise "
            "VIGIL_ALERT_REDELIVERY above %g s to give it its whole time-out",
            name, longest, settings.alert_redelivery, cap, longest / 0.8)
    app = tasks.configure(settings.broker_url, settings.alert_queue, settings.alert_redelivery,
                          settings.database_url, settings.alert_scripts_path, longest)
    argv = ["worker", "--loglevel", level, "--concurrency", str(args.concurrency), "--queues", settings.alert_queue,
            "--hostname", args.hostname, "--pool", args.pool, "--without-mingle", "--without-gossip",
            "--without-heartbeat"]
    logging.getLogger("vigil.alerts").info(
        "vigil worker: queue %s on %s, %d %s process(es), redelivery after %g s", settings.alert_queue,
        _redact(settings.broker_url), args.concurrency, args.pool, settings.alert_redelivery)
    app.worker_main(argv)
    return 0


def _redact(url: str) -> str:
    """The broker URL without its password, for the log."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at or ":" not in creds:
        return url
    return f"{scheme}{sep}{creds.split(':', 1)[0]}:***@{host}"


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= n <= 256:
        raise argparse.ArgumentTypeError(f"must be between 1 and 256, got {n}")
    return n
# --- web: `vigil web`, `vigil user create`, `vigil token create` (they need the web room) -----------


def cmd_web(args: argparse.Namespace) -> int:
    import logging
    import signal
    import threading

    from vigil.run.web import WebServer

    settings = admin._settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    admin._engine(settings).dispose()  # the schema must be current: say so before serving anything
    try:
        server = WebServer(settings)
    except OSError as e:
        raise admin.CliError(f"cannot listen on {settings.web_listen[0]}:{settings.web_listen[1]} "
                             f"(VIGIL_WEB_LISTEN): {e.strerror}") from None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    print(f"vigil web: serving {server.url}", flush=True)
    stop.wait()
    server.stop()
    return 0


def _read_password(prompt_user: str) -> str:
    import getpass

    if sys.stdin.isatty():
        first = getpass.getpass(f"password for {prompt_user}: ")
        if getpass.getpass("again: ") != first:
            raise admin.CliError("the two passwords differ; nothing was created")
        return first
    line = sys.stdin.readline()
    if not line:
        raise admin.CliError("no password on standard input (send it as one line)")
    return line.rstrip("\r\n")


def cmd_user_create(args: argparse.Namespace) -> int:
    from vigil.server.config.model import ConfigError
    from vigil.server.config.tables import Role
    from vigil.server.config.users import ROLE_NAMES, UserRepo

    role = Role.SUPER_ADMIN if args.admin else ROLE_NAMES[args.role]
    engine = admin._engine(admin._settings())
    try:
        password = _read_password(args.name)
        uid = UserRepo(engine).create_user(args.name, password, role, groups=args.group or [])
    except ConfigError as e:
        raise admin.CliError(f"{e}; nothing was created") from None
    finally:
        engine.dispose()
    print(f"user {args.name} created (id {uid}, role {role.name.lower().replace('_', ' ')})")
    return 0


def cmd_token_create(args: argparse.Namespace) -> int:
    import time

    from vigil.server.config.model import ConfigError
    from vigil.server.config.users import UserRepo

    engine = admin._engine(admin._settings())
    try:
        users = UserRepo(engine)
        user = users.by_name(args.user)
        if user is None:
            raise admin.CliError(f"no user named {args.user!r}: create one with `vigil user create {args.user}`")
        now = int(time.time())
        if args.expires is not None and not 1 <= args.expires <= 3650:
            raise admin.CliError(f"--expires {args.expires}: a number of days from 1 to 3650")
        expires = now + args.expires * 86400 if args.expires else 0
        name = args.name or f"cli-{time.strftime('%Y%m%d-%H%M%S', time.gmtime(now))}-{now % 1000:03d}"
        tokenid, secret = users.create_token(user.userid, name, now, expires)
    except ConfigError as e:
        raise admin.CliError(str(e)) from None
    finally:
        engine.dispose()
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(expires)) if expires else "never"
    print(f"token {name!r} (id {tokenid}) for {args.user}, expires {when}; it is shown only now:", file=sys.stderr)
    print(secret)
    return 0


def add_web_commands(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("web", help="serve the web UI and JSON API on VIGIL_WEB_LISTEN")
    s.set_defaults(func=cmd_web)
    user = sub.add_parser("user", help="web users").add_subparsers(dest="user_command", required=True)
    s = user.add_parser("create", help="create a user; the password is asked for, or read from standard input")
    s.add_argument("name")
    s.add_argument("--admin", action="store_true", help="a super admin (all rights)")
    s.add_argument("--role", default="user", choices=["user", "admin", "super admin", "guest"],
                   help="role when not --admin (default: user)")
    s.add_argument("--group", action="append", help="user group to join (repeatable; made if missing)")
    s.set_defaults(func=cmd_user_create)
    token = sub.add_parser("token", help="API tokens").add_subparsers(dest="token_command", required=True)
    s = token.add_parser("create", help="create an API token for a user and print it (the last line)")
    s.add_argument("user")
    s.add_argument("--expires", type=int, metavar="DAYS", help="expire after this many days (default: never)")
    s.add_argument("--name", help="the token's name (default: cli-DATE)")
    s.set_defaults(func=cmd_token_create)


# --- end of web block ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = admin.build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    add_web_commands(sub)
    s = sub.add_parser("up", help="run everything on this machine (SQLite in VIGIL_DATA_DIR by default)")
    s.set_defaults(func=cmd_up)
    s = sub.add_parser("server", help="run ingest (and housekeeping) against VIGIL_DATABASE_URL")
    s.set_defaults(func=cmd_server)
    s = sub.add_parser("proxy", help="run a proxy: collect for a remote network, buffer, forward to a server")
    s.add_argument("-c", "--config", default="/etc/zabbix/zabbix_proxy.conf",
                   help="a zabbix_proxy.conf-style file (default /etc/zabbix/zabbix_proxy.conf)")
    s.add_argument("--print-config", action="store_true", help="print the effective configuration and exit")
    s.set_defaults(func=cmd_proxy)
    s = sub.add_parser("worker", help="run a Celery worker delivering alerts from VIGIL_BROKER_URL")
    s.add_argument("-c", "--concurrency", type=_positive, default=2, help="pool processes (threads) (default 2)")
    s.add_argument("-l", "--loglevel", help="debug, info, warning or error (default: VIGIL_LOG_LEVEL)")
    s.add_argument("-n", "--hostname", default="vigil@%h", help="the worker's node name (default vigil@%%h)")
    s.add_argument("--pool", choices=("prefork", "threads", "solo"), default="prefork",
                   help="prefork (default: a process per task), threads or solo")
    s.set_defaults(func=cmd_worker)
    return p


def main(argv: list[str] | None = None) -> int:
    return admin.main(argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
