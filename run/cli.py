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


def build_parser() -> argparse.ArgumentParser:
    p = admin.build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    s = sub.add_parser("up", help="run everything on this machine (SQLite in VIGIL_DATA_DIR by default)")
    s.set_defaults(func=cmd_up)
    s = sub.add_parser("server", help="run ingest (and housekeeping) against VIGIL_DATABASE_URL")
    s.set_defaults(func=cmd_server)
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
