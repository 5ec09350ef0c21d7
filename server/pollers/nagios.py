"""Nagios plugins as checks: items of type `nagios` with the key `nagios.check[plugin,<arg>,...]`.

The plugin is a file in VIGIL_NAGIOS_PLUGINS (default /usr/lib/nagios/plugins, Debian's
monitoring-plugins); its name cannot leave that directory. The key's other parameters are its
arguments, as a list (no shell), with {HOST.CONN}, {HOST.IP}, {HOST.DNS}, {HOST.HOST} and
{HOST.NAME} replaced. It runs in its own process group, killed at the item's time-out; at most
MAX_OUTPUT bytes of its output are kept.

- The item's value is the plugin's state: its exit status 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN;
  any other status is UNKNOWN (3), with the status named in the message. A plugin that is missing,
  not executable or exits 126/127 (its interpreter or a command it needs is missing) makes the item
  not supported with that reason; so does one that hangs past the time-out.
- The check's dependent items receive, instead of the state, the parsed result as JSON:
  `{"state": 0, "message": "DISK OK - ...", "perfdata": {"/": {"value": 1.5e9, "uom": "B", ...}}}`.
  On the first result (and whenever the plugin reports a label it did not report before) Vigil
  creates them on the host (`ConfigRepo.add_nagios_items`): `nagios.message[plugin,args...]` (text:
  the first output line) and one `nagios.perf[label,plugin,args...]` per perfdata label (float, in
  base units: s, B, %; KB/MB/GB/TB are multiples of 1024, ms and us are turned into seconds), each
  with a JSONPath step picking its part. So check_disk, check_load, check_procs and check_tcp give
  graphs without a wrapper.

Perfdata follows the Nagios plugin guidelines: `'label'=value[UOM];[warn];[crit];[min];[max]`,
space separated, after the first `|` of the first line and of the long output; a label with spaces
is quoted with `'` (a quote inside doubled), a value `U` means undetermined and is skipped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from dataclasses import dataclass
from typing import Any

from vigil.agent.protocol.itemkey import ItemKeyError, _quote, parse
from vigil.server.config.model import plain_file_name
from vigil.server.config.repo import PollItem
from vigil.server.pollers import NotSupported, Polled, process

MAX_OUTPUT = 65536  # bytes of a plugin's output kept (Nagios keeps 8 KiB of the first lines)
STATES = {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}
UNITS: dict[str, tuple[str, float]] = {  # a perfdata UOM -> (the item's units, factor to them)
    "s": ("s", 1.0), "ms": ("s", 1e-3), "us": ("s", 1e-6), "%": ("%", 1.0), "b": ("B", 1.0),
    "kb": ("B", 1024.0), "mb": ("B", 1024.0 ** 2), "gb": ("B", 1024.0 ** 3), "tb": ("B", 1024.0 ** 4),
    "c": ("", 1.0), "": ("", 1.0),
}
_PERF = re.compile(r"\s*('(?:[^']|'')+'|[^'=\s][^=\s]*)=(\S*)")
_NUMBER = re.compile(r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)([A-Za-z%]*)")
_HOST_MACRO = re.compile(r"\{HOST\.(CONN|IP|DNS|HOST|NAME)\}")

_plugins = "/usr/lib/nagios/plugins"
log = logging.getLogger("vigil.pollers.nagios")


def configure(plugins: str = "/usr/lib/nagios/plugins") -> None:
    global _plugins
    _plugins = plugins


@dataclass(frozen=True, slots=True)
class Perf:
    label: str
    value: float  # in `units`
    units: str
    uom: str  # as the plugin wrote it
    warn: str = ""
    crit: str = ""
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True, slots=True)
class CheckResult:
    state: int
    message: str
    perfdata: list[Perf]
    long_output: str = ""

    def feed(self) -> str:
        """What the check's dependent items receive."""
        perf: dict[str, Any] = {}
        for p in self.perfdata:
            perf[p.label] = {"value": p.value, "units": p.units, "uom": p.uom, "warn": p.warn, "crit": p.crit,
                             "min": p.min, "max": p.max}
        return json.dumps({"state": self.state, "state_name": STATES[self.state], "message": self.message,
                           "perfdata": perf})


def parse_output(code: int, text: str) -> CheckResult:
    """A plugin's exit status and output as the guidelines define them."""
    lines = text.splitlines()
    first = lines[0] if lines else ""
    message, _, perf_text = first.partition("|")
    long_lines: list[str] = []
    perf_parts = [perf_text]
    for i, line in enumerate(lines[1:], 1):
        head, bar, tail = line.partition("|")
        if bar:
            long_lines.append(head)
            perf_parts += [tail, *lines[i + 1:]]
            break
        long_lines.append(line)
    message = message.strip()
    if code not in STATES:
        reason = f"exit status {code} is not a Nagios state" + (" (killed by a signal)" if code < 0 else "")
        message = f"{reason}: {message}" if message else reason
        code = 3
    elif not message:
        message = "(the plugin printed nothing)"
    return CheckResult(code, message, parse_perfdata(" ".join(perf_parts)), "\n".join(long_lines).strip())


def parse_perfdata(text: str) -> list[Perf]:
    """The labels of a perfdata text; malformed or undetermined ones are skipped (the rest still count)."""
    out: list[Perf] = []
    seen: set[str] = set()
    pos = 0
    while pos < len(text):
        m = _PERF.match(text, pos)
        if m is None:
            nxt = text.find(" ", pos + 1)  # skip the malformed token
            if nxt < 0:
                break
            pos = nxt
            continue
        pos = m.end()
        label = m.group(1)
        if label.startswith("'"):
            label = label[1:-1].replace("''", "'")
        label = label.strip()
        fields = m.group(2).split(";")
        nm = _NUMBER.fullmatch(fields[0].replace(",", "."))
        if not label or label in seen or nm is None:
            continue
        uom = nm.group(2)
        unit = UNITS.get(uom if uom in ("s", "ms", "us", "%", "c") else uom.lower())
        if unit is None:
            continue  # not a UOM of the guidelines
        units, factor = unit
        seen.add(label)
        out.append(Perf(label, float(nm.group(1)) * factor, units, uom,
                        fields[1] if len(fields) > 1 else "", fields[2] if len(fields) > 2 else "",
                        _limit(fields, 3, factor), _limit(fields, 4, factor)))
    return out


def _limit(fields: list[str], i: int, factor: float) -> float | None:
    if i >= len(fields) or not fields[i]:
        return None
    m = _NUMBER.fullmatch(fields[i].replace(",", "."))
    return float(m.group(1)) * factor if m else None


def plugin_argv(item: PollItem, directory: str) -> list[str]:
    try:
        key = parse(item.key)
    except ItemKeyError as e:
        raise NotSupported(f"Invalid item key format: {e}") from None
    if key.name != "nagios.check" or not key.params:
        raise NotSupported("a nagios item's key is nagios.check[plugin,<arg>,...]")
    if any(isinstance(p, list) for p in key.params):
        raise NotSupported("nagios.check parameters must not be arrays: give each argument as one parameter")
    plugin = str(key.params[0])
    if not plain_file_name(plugin):
        raise NotSupported(f"Invalid plugin name {plugin!r}: a file name in {directory} (VIGIL_NAGIOS_PLUGINS), "
                           "without '/'")
    return [os.path.join(directory, plugin), *(host_macros(str(p), item) for p in key.params[1:])]


def host_macros(text: str, item: PollItem) -> str:
    address = item.interface.address if item.interface is not None else ""
    values = {"CONN": address, "IP": address, "DNS": address, "HOST": item.host, "NAME": item.host}
    return _HOST_MACRO.sub(lambda m: values[m.group(1)], text)


async def run_plugin(argv: list[str], timeout: float) -> CheckResult:
    """Run a plugin; NotSupported when it cannot run, hangs, or its command is missing."""
    name = os.path.basename(argv[0])
    if not os.path.isfile(argv[0]):
        raise NotSupported(f"No plugin {name!r} in {os.path.dirname(argv[0])} (VIGIL_NAGIOS_PLUGINS)")
    if not os.access(argv[0], os.X_OK):
        raise NotSupported(f"The plugin {argv[0]} is not executable")
    env = dict(os.environ, LC_ALL="C")  # numbers in perfdata with a decimal point
    try:
        done = await process.run(argv, timeout, MAX_OUTPUT, env=env)
    except process.Timeout as e:
        raise NotSupported(f"Timeout: the plugin {name} {e}") from None
    except OSError as e:
        raise NotSupported(f"Cannot run the plugin {argv[0]}: {e.strerror or e}") from None
    out = done.out.decode(errors="replace")
    if done.code in (126, 127):
        err = (done.err or done.out).decode(errors="replace").strip().splitlines()
        what = "cannot be executed" if done.code == 126 else "command not found"
        raise NotSupported(f"The plugin {name} exited with {done.code} ({what})" + (f": {err[0]}" if err else ""))
    if not out.strip() and done.err:
        out = done.err.decode(errors="replace")
    return parse_output(done.code, out)


class NagiosPoller:
    """The scheduler's poll function for nagios items; creates the check's message and perfdata items
    through the configuration repo (bound by the scheduler)."""

    def __init__(self) -> None:
        self.repo: Any = None
        self._made: dict[int, frozenset[str]] = {}  # itemid -> the dependent keys known to exist

    def bind(self, repo: Any) -> None:
        self.repo = repo

    async def __call__(self, item: PollItem, timeout: float) -> Polled:
        argv = plugin_argv(item, _plugins)
        result = await run_plugin(argv, timeout)
        wanted = dependent_items(item.key, result)
        keys = frozenset(k for k, *_ in wanted)
        if self.repo is not None and not keys <= self._made.get(item.itemid, frozenset()):
            try:
                await asyncio.to_thread(self.repo.add_nagios_items, item.itemid, wanted)
            except Exception as e:  # the database is away: the state still counts; try again next time
                log.warning("cannot make the message and perfdata items of %s on %s: %s", item.key, item.host,
                            str(e).splitlines()[0] if str(e) else type(e).__name__)
            else:
                self._made[item.itemid] = keys | self._made.get(item.itemid, frozenset())
        return Polled(str(result.state), result.feed())


def dependent_items(check_key: str, result: CheckResult) -> list[tuple[str, str, int, str, str]]:
    """(key, name, value type, units, JSONPath) of the dependent items a check's result feeds."""
    from vigil.server.config.tables import ValueType

    key = parse(check_key)
    params = ",".join(_quote(p) for p in key.params)
    plugin = str(key.params[0])
    out = [(f"nagios.message[{params}]", f"{plugin}: message", int(ValueType.TEXT), "", "$.message")]
    for p in result.perfdata:
        path = '$.perfdata["' + p.label.replace("\\", "\\\\").replace('"', '\\"') + '"].value'
        out.append((f"nagios.perf[{_quote(p.label)},{params}]", f"{plugin}: {p.label}", int(ValueType.FLOAT),
                    p.units, path))
    return out
