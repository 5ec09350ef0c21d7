"""External checks (`type: external`), as Zabbix's: the key `script.sh[a,b]` runs
`$VIGIL_EXTERNAL_SCRIPTS/script.sh a b` (arguments as a list, no shell; {HOST.CONN} and the other
{HOST.*} macros replaced), in its own process group, killed at the item's time-out.

Its standard output, trailing white space removed, is the value (at most MAX_OUTPUT bytes: longer
output makes the item not supported rather than storing a cut value). A non-zero exit status makes
the item not supported with the status and the first line of standard error (or output) as the
reason; so does output only on standard error. The script name cannot leave the directory.
"""

from __future__ import annotations

import os

from vigil.agent.protocol.itemkey import ItemKeyError, parse
from vigil.server.config.model import plain_file_name
from vigil.server.config.repo import PollItem
from vigil.server.pollers import NotSupported, process
from vigil.server.pollers.nagios import host_macros

MAX_OUTPUT = 16 * 1024 * 1024  # Zabbix's largest text value

_scripts = ""


def configure(scripts: str = "") -> None:
    global _scripts
    _scripts = scripts


def script_argv(item: PollItem, directory: str) -> list[str]:
    if not directory:
        raise NotSupported("External checks are not enabled: set VIGIL_EXTERNAL_SCRIPTS to the directory of the "
                           "scripts")
    try:
        key = parse(item.key)
    except ItemKeyError as e:
        raise NotSupported(f"Invalid item key format: {e}") from None
    if not plain_file_name(key.name):
        raise NotSupported(f"Invalid script name {key.name!r}: a file name in {directory} (VIGIL_EXTERNAL_SCRIPTS)")
    if any(isinstance(p, list) for p in key.params):
        raise NotSupported("external check parameters must not be arrays")
    return [os.path.join(directory, key.name), *(host_macros(str(p), item) for p in key.params)]


async def poll(item: PollItem, timeout: float) -> str:
    argv = script_argv(item, _scripts)
    name = os.path.basename(argv[0])
    if not os.path.isfile(argv[0]):
        raise NotSupported(f"No script {name!r} in {_scripts} (VIGIL_EXTERNAL_SCRIPTS)")
    try:
        done = await process.run(argv, timeout, MAX_OUTPUT, cwd=_scripts)
    except process.Timeout as e:
        raise NotSupported(f"Timeout: the script {name} {e}") from None
    except OSError as e:
        raise NotSupported(f"Cannot run the script {argv[0]}: {e.strerror or e}") from None
    err = done.err.decode(errors="replace").strip()
    out = done.out.decode(errors="replace").rstrip()
    if done.code != 0:
        why = (err or out).splitlines()
        status = f"was killed by signal {-done.code}" if done.code < 0 else f"exited with {done.code}"
        raise NotSupported(f"The script {name} {status}" + (f": {why[0]}" if why else ""))
    if done.out_cut:
        raise NotSupported(f"The script {name} printed more than {MAX_OUTPUT} bytes")
    if not out and err:
        raise NotSupported(f"The script {name} wrote to standard error only: {err.splitlines()[0]}")
    return out
