"""Engines for the store URL and `vigil db upgrade`: Alembic migrations run from the package.

Alembic (and Mako, which it loads) is imported by the functions that migrate, not by this module:
`engine_for` is used by processes that never migrate (the proxy, the web UI), and Alembic costs a
process about 11 MB.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Engine

if TYPE_CHECKING:
    from alembic.config import Config
    from vigil.server.store.base import PgTimeouts

MIGRATIONS = Path(__file__).parent / "migrations"


class MigrationError(RuntimeError):
    """A migration could not be applied; the database is left at the revision it had."""


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
    engine = sa.create_engine(sqlalchemy_url(url), pool_pre_ping=True, connect_args=pg.connect_args() if pg else {})

    @sa.event.listens_for(engine, "connect")
    def _durable(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        # An administrator may make asynchronous commit the database's or role's default; a
        # configuration change we report done must survive a crash all the same. Set outside a
        # transaction so the pool's rollback on return does not undo it.
        autocommit = dbapi_conn.autocommit
        dbapi_conn.autocommit = True
        dbapi_conn.execute("SET synchronous_commit = on")
        dbapi_conn.autocommit = autocommit

    return engine


def _config(connection: sa.Connection) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate to `revision` in one transaction: all of it or, if anything fails, none of it."""
    if engine.dialect.name == "sqlite":
        _upgrade_sqlite(engine, revision)
        return
    from alembic import command

    with engine.begin() as conn:
        command.upgrade(_config(conn), revision)


def _upgrade_sqlite(engine: Engine, revision: str) -> None:
    """SQLite's documented procedure for schema changes (lang_altertable.html, "other kinds of changes").

    Foreign keys off (outside a transaction, else the PRAGMA does nothing), the changes, then
    `PRAGMA foreign_key_check` before the commit, foreign keys on again. With them on, batch mode's
    rebuild of a table (create a copy, drop the original, rename the copy) deletes every row of
    the tables that reference it through ON DELETE CASCADE: migration 0002 emptied item_tags and
    item_rtdata that way.
    """
    from alembic import command

    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        conn.commit()
        # The driver opens a transaction only before INSERT/UPDATE/DELETE and runs DDL outside one:
        # take over so every statement of the migration is in our BEGIN … COMMIT.
        legacy = raw.isolation_level  # type: ignore[union-attr]
        raw.isolation_level = None  # type: ignore[union-attr]
        try:
            with conn.begin():
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                command.upgrade(_config(conn), revision)
                broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    rows = ", ".join(f"{table} row {rowid} -> {parent}" for table, rowid, parent, _ in broken[:10])
                    raise MigrationError(
                        f"migrating to {revision} would leave {len(broken)} rows referring to rows that do not "
                        f"exist ({rows}); nothing was changed")
        finally:
            raw.isolation_level = legacy  # type: ignore[union-attr]
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")
            conn.commit()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

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
