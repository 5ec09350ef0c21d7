"""The `vigil` command: the admin commands of server/cli.py, and the processes that wire rooms together.

`vigil up`, `vigil server` and `vigil worker` are composed here, the one place allowed to import every
room (ARCHITECTURE.md: a process is composed at its entry point).
"""

from __future__ import annotations

import argparse
import sys

from vigil.server import cli as admin


def cmd_server(args: argparse.Namespace) -> int:
    from vigil.server.ingest.server import serve

    return admin.run_async(serve)


def cmd_up(args: argparse.Namespace) -> int:
    from vigil.run.up import up

    return admin.run_async(up)


def build_parser() -> argparse.ArgumentParser:
    p = admin.build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    s = sub.add_parser("up", help="run everything on this machine (SQLite in VIGIL_DATA_DIR by default)")
    s.set_defaults(func=cmd_up)
    s = sub.add_parser("server", help="run ingest (and housekeeping) against VIGIL_DATABASE_URL")
    s.set_defaults(func=cmd_server)
    return p


def main(argv: list[str] | None = None) -> int:
    return admin.main(argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
