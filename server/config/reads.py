"""One database connection for all the reads of a unit of work (a web request), in autocommit mode.

A page asks the read repositories (Browse, ProblemBrowse, UserRepo.user...) for a dozen things, and
each `engine.connect()` costs round trips of its own: the pool's liveness ping, BEGIN, and the
ROLLBACK on return; under load those cost more than the queries. Inside `shared(engine)` the reads
made through `connect(engine)` use one connection taken once (one ping) in autocommit mode (no
BEGIN/ROLLBACK; every statement sees what is committed when it runs, as READ COMMITTED already
gives). Outside it, `connect` is `engine.connect()`. Writes never go through here: they keep their
own `engine.begin()` transactions.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from sqlalchemy.engine import Connection, Engine


class SharedReads:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._conn: Connection | None = None

    def connection(self) -> Connection:
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


_current: ContextVar[SharedReads | None] = ContextVar("vigil_shared_reads", default=None)


def begin(engine: Engine) -> SharedReads:
    """Start sharing one read connection of `engine` in this context; end it with `end()`."""
    s = SharedReads(engine)
    _current.set(s)
    return s


def end() -> None:
    s = _current.get()
    _current.set(None)
    if s is not None:
        s.close()


@contextmanager
def shared(engine: Engine) -> Iterator[SharedReads]:
    s = begin(engine)
    try:
        yield s
    finally:
        end()


@contextmanager
def connect(engine: Engine) -> Iterator[Connection]:
    """A connection for reads: the shared one when `shared(engine)` is in force, else a new one."""
    s = _current.get()
    if s is None or s.engine is not engine:
        with engine.connect() as c:
            yield c
        return
    c = s.connection()
    try:
        yield c
    except BaseException:
        if c.invalidated:  # the database went away: the next read takes a fresh connection
            s.close()
        raise
