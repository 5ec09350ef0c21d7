"""LogType / LogFile / DebugLevel into Python logging, with zabbix_agentd's line layout.

DebugLevel 3 (the default) shows warnings and the start/stop notes (Zabbix prints those at any
level); 4 adds debugging; 5 also logs every passive request.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys

from vigil.agent.conf import AgentConfig, ConfError

LEVELS = {0: logging.CRITICAL, 1: logging.CRITICAL, 2: logging.ERROR, 3: logging.INFO, 4: logging.DEBUG,
          5: logging.DEBUG}
FORMAT = "%(process)6d:%(asctime)s.%(msecs)03d %(message)s"
DATEFMT = "%Y%m%d:%H%M%S"


def setup_logging(cfg: AgentConfig) -> logging.Handler:
    """Install one handler on the `vigil` logger; returns it. Raises ConfError if LogFile cannot be opened."""
    handler: logging.Handler
    if cfg.log_type == "file":
        if not cfg.log_file:
            raise ConfError("LogType=file needs LogFile to be set")
        try:
            handler = logging.FileHandler(cfg.log_file, encoding="utf-8")
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
