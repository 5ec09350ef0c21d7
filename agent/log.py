"""LogType / LogFile / DebugLevel into Python logging, with zabbix_agentd's line layout.

DebugLevel 3 (the default) shows warnings and the start/stop notes (Zabbix prints those at any
level); 4 adds debugging; 5 also logs every passive request. LogFileSize rotates the log file as
zabbix_agentd does: a file grown past the limit becomes `<LogFile>.old` (one old file kept).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import threading
import time
from collections.abc import Callable

from vigil.agent.conf import AgentConfig, ConfError

LEVELS = {0: logging.CRITICAL, 1: logging.CRITICAL, 2: logging.ERROR, 3: logging.INFO, 4: logging.DEBUG,
          5: logging.DEBUG}
FORMAT = "%(process)6d:%(asctime)s.%(msecs)03d %(message)s"
DATEFMT = "%Y%m%d:%H%M%S"


MB = 1024 * 1024


class LogFileHandler(logging.FileHandler):
    """LogFile with LogFileSize. Before each line, as zabbix_agentd: a file larger than the limit is
    moved to `<file>.old` (replacing it) and a new one begun; a file that someone else moved,
    deleted or truncated is reopened, so external rotation works too. limit 0: never rotate."""

    def __init__(self, path: str, limit: int) -> None:
        super().__init__(path, encoding="utf-8")
        self.limit = limit

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._rotate()
        except OSError:
            pass  # keep writing to what is open; the next line tries again
        super().emit(record)

    def _reopen(self) -> None:
        if self.stream is not None:
            self.stream.close()
        self.stream = self._open()

    def _rotate(self) -> None:
        try:
            st = os.stat(self.baseFilename)
        except FileNotFoundError:
            self._reopen()
            return
        if self.stream is not None:
            own = os.fstat(self.stream.fileno())
            if (own.st_dev, own.st_ino) != (st.st_dev, st.st_ino):
                self._reopen()
                return
        if not self.limit or st.st_size <= self.limit * MB:
            return
        old = self.baseFilename + ".old"
        try:
            os.remove(old)
        except FileNotFoundError:
            pass
        try:
            os.rename(self.baseFilename, old)
        except OSError as e:
            with open(self.baseFilename, "w", encoding="utf-8") as f:
                f.write(f"cannot rename log file {self.baseFilename!r} to {old!r}: {e.strerror}; "
                        "the log file was truncated\n")
        self._reopen()


class RateLimit:
    """At most one log line per key (a peer's address) every `interval` seconds; the lines it
    suppressed are counted and reported with the next one. Keys are bounded: past `max_keys`
    distinct keys in one interval, the rest share one key, so a scan from many addresses cannot
    grow memory or the log without bound."""

    OTHERS = "(other addresses)"

    def __init__(self, interval: float = 60.0, max_keys: int = 256,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.max_keys = max_keys
        self.clock = clock
        self.lock = threading.Lock()
        self.entries: dict[str, list[float | int]] = {}  # key -> [last logged at, suppressed since]

    def check(self, key: str) -> tuple[bool, int, str]:
        """(log it now?, how many were suppressed before it, the key it was counted under)."""
        now = self.clock()
        with self.lock:
            if key not in self.entries and len(self.entries) >= self.max_keys:
                expired = [k for k, (t, _) in self.entries.items() if now - t >= self.interval]
                for k in expired:
                    del self.entries[k]
                if len(self.entries) >= self.max_keys:
                    key = self.OTHERS
            e = self.entries.get(key)
            if e is None or now - e[0] >= self.interval:
                suppressed = int(e[1]) if e is not None else 0
                self.entries[key] = [now, 0]
                return True, suppressed, key
            e[1] = int(e[1]) + 1
            return False, 0, key


def setup_logging(cfg: AgentConfig) -> logging.Handler:
    """Install one handler on the `vigil` logger; returns it. Raises ConfError if LogFile cannot be opened."""
    handler: logging.Handler
    if cfg.log_type == "file":
        if not cfg.log_file:
            raise ConfError("LogType=file needs LogFile to be set")
        try:
            handler = LogFileHandler(cfg.log_file, cfg.log_file_size)
        except OSError as e:
            raise ConfError(f"cannot open LogFile {cfg.log_file!r}: {e.strerror}") from None
    elif cfg.log_type == "system":
        address = "/dev/log" if os.path.exists("/dev/log") else ("localhost", 514)
        handler = logging.handlers.SysLogHandler(address, facility=logging.handlers.SysLogHandler.LOG_DAEMON)
        handler.ident = "vigil-agent: "
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT, DATEFMT))
    root = logging.getLogger("vigil")
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(LEVELS[cfg.debug_level])
    root.propagate = False
    return handler
