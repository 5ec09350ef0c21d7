"""Script: run an alert script with its parameters, as Zabbix does (no shell).

Parameters: script (an absolute path, or a name in the alert scripts directory), parameters [..]
(each may hold {ALERT.SENDTO}, {ALERT.SUBJECT}, {ALERT.MESSAGE} and {ALERT.ID}; none or an empty
list: the first three, what Zabbix fills in for a new script media type), timeout. The script gets
VIGIL_ALERT_ID in its environment too. An exit code other than 0 is a failure with the start of its
standard error; at the time-out the script and its children are killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from vigil.alerts.media import Context, MediaError, Message, param_str, timeout_of
from vigil.server.store.alertlog import MediaType

DEFAULT_PARAMETERS = ["{ALERT.SENDTO}", "{ALERT.SUBJECT}", "{ALERT.MESSAGE}"]
STDERR_IN_ERROR = 500


def arguments(media: MediaType, msg: Message) -> list[str]:
    params = media.params.get("parameters") or DEFAULT_PARAMETERS
    if not isinstance(params, list) or not all(isinstance(p, str | int | float) for p in params):
        raise MediaError(media, "parameter 'parameters': expected a list of texts", permanent=True)
    macros = {"{ALERT.SENDTO}": msg.sendto, "{ALERT.SUBJECT}": msg.subject, "{ALERT.MESSAGE}": msg.message,
              "{ALERT.ID}": str(msg.alertid)}
    out = []
    for p in params:
        text = str(p)
        for macro, value in macros.items():
            text = text.replace(macro, value)
        out.append(text)
    return out


def resolve(media: MediaType, context: Context) -> Path:
    name = param_str(media, "script")
    path = Path(name)
    if not path.is_absolute():
        if "/" in name or name in ("", ".", ".."):
            raise MediaError(media, f"parameter 'script': {name!r} must be a file name in the alert scripts "
                                    f"directory ({context.scripts_dir}) or an absolute path", permanent=True)
        path = context.scripts_dir / name
    if not path.is_file():
        raise MediaError(media, f"script {str(path)!r} does not exist")
    if not os.access(path, os.X_OK):
        raise MediaError(media, f"script {str(path)!r} is not executable (chmod +x it)")
    return path


def send(media: MediaType, msg: Message, context: Context) -> None:
    path = resolve(media, context)
    args = arguments(media, msg)
    timeout = timeout_of(media)
    env = dict(os.environ, VIGIL_ALERT_ID=str(msg.alertid))
    try:
        proc = subprocess.Popen([str(path), *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, env=env, start_new_session=True)
    except OSError as e:
        raise MediaError(media, f"cannot run script {str(path)!r}: {e}") from None
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
        raise MediaError(media, f"script {path.name!r} did not finish within {timeout:g} s and was killed") from None
    if proc.returncode != 0:
        text = err.decode(errors="replace").strip()[:STDERR_IN_ERROR]
        how = f"exited with {proc.returncode}" if proc.returncode > 0 else f"was killed by signal {-proc.returncode}"
        raise MediaError(media, f"script {path.name!r} {how}" + (f": {text}" if text else ""))
