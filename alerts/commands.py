"""Remote commands of action operations: the code is server/commands.py (the proxy runs them too)."""

from vigil.server.commands import (
    MAX_OUTPUT,
    CommandResult,
    ReplyError,
    exchange,
    quote_param,
    run_on_agent,
    run_on_server,
    system_run_key,
)

__all__ = ["MAX_OUTPUT", "CommandResult", "ReplyError", "exchange", "quote_param", "run_on_agent", "run_on_server",
           "system_run_key"]
