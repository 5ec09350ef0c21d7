"""Engines for the store URL and `vigil db upgrade`: Alembic migrations run from the package."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

if TYPE_CHECKING:
    from vigil.server.store.base import PgTimeouts

MIGRATIONS = Path(__file__).parent / "migrations"


def sqlalchemy_url(url: str) -> str:
    """Our URLs are the drivers' own (postgresql://…); SQLAlchemy wants the driver named."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def engine_for(url: str, pg: PgTimeouts | None = None) -> Engine:
    """An engine for the URL; `pg` sets the time-outs of its PostgreSQL connections (none by default)."""
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url)

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    # pool_pre_ping: a connection the database dropped (restarted) is replaced when next taken from the pool.
    return sa.create_engine(sqlalchemy_url(url), pool_pre_ping=True, connect_args=pg.connect_args() if pg else {})


def _config(connection: sa.Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    with engine.begin() as conn:
        command.upgrade(_config(conn), revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()


def check_current(engine: Engine) -> None:
    """Refuse to run on a database that is not migrated to the code's revision."""
    have, want = current_revision(engine), head_revision()
    if have != want:
        raise RuntimeError(
            f"the database is at migration {have or 'none'} but this Vigil needs {want}: run `vigil db upgrade`"
        )
