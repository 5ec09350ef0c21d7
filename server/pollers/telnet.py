"""Telnet checks: `telnet.run[<unique short description>,<ip>,<port>,<encoding>]`, over asyncio streams.

As Zabbix does it: connect (the key's ip, else the interface's address; port 23 by default), wait for
the login prompt (a line ending with `:`), send `username`, wait for the password prompt (`:`), send
`password`, wait for the shell prompt (a line ending with `$`, `#`, `>` or `%`), then send each
line of the item's script and read its output up to the next prompt. The value is the output of the
lines, the echoed command and the prompt removed, lines joined by newlines, decoded with the key's
encoding (UTF-8 by default).

Telnet option negotiation is refused politely: every DO is answered WONT, every WILL DONT (so the
device stays in its plain line mode and echoes nothing it would not anyway); subnegotiations are
skipped. The whole check is bounded by the item's time-out, and what is read by MAX_OUTPUT bytes.
A device that asks for the login again after the password refused it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from vigil.server.config.repo import PollItem
from vigil.server.pollers import NotSupported, Unreachable
from vigil.server.pollers.scriptkey import parse_script_key

MAX_OUTPUT = 512 * 1024
PROMPTS = ("$", "#", ">", "%")
IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240


@dataclass(frozen=True, slots=True)
class Check:
    address: str
    port: int
    encoding: str
    username: str
    password: str
    script: str

    @property
    def where(self) -> str:
        return f"[{self.address}]:{self.port}"


def parse(item: PollItem) -> Check:
    k = parse_script_key(item, "telnet.run", 23, ["description", "ip", "port", "encoding"])
    p = item.poll
    if not p.params.strip():
        raise NotSupported("The item has no script (params) to run")
    if not p.username:
        raise NotSupported("The item has no username to log in as")
    return Check(k.address, k.port, k.encoding, p.username, p.password, p.params)


class Session:
    """A Telnet connection's data stream with the option negotiation taken out (and refused)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, where: str) -> None:
        self.reader, self.writer, self.where = reader, writer, where
        self.buf = bytearray()  # data not consumed yet
        self.total = 0
        self._pending = b""  # an IAC sequence split across reads

    async def _fill(self) -> None:
        chunk = await self.reader.read(65536)
        if not chunk:
            raise NotSupported(f"{self.where} closed the connection{self._last_line()}")
        self.total += len(chunk)
        if self.total > MAX_OUTPUT:
            raise NotSupported(f"{self.where} sent more than {MAX_OUTPUT} bytes")
        data = self._pending + chunk
        self._pending = b""
        i, replies = 0, bytearray()
        while i < len(data):
            b = data[i]
            if b != IAC:
                j = data.find(IAC, i)
                j = len(data) if j < 0 else j
                self.buf += data[i:j]
                i = j
                continue
            if i + 1 >= len(data):
                self._pending = data[i:]
                break
            cmd = data[i + 1]
            if cmd == IAC:
                self.buf.append(IAC)
                i += 2
            elif cmd in (DO, DONT, WILL, WONT):
                if i + 2 >= len(data):
                    self._pending = data[i:]
                    break
                opt = data[i + 2]
                if cmd == DO:
                    replies += bytes((IAC, WONT, opt))
                elif cmd == WILL:
                    replies += bytes((IAC, DONT, opt))
                i += 3  # DONT / WONT need no answer (answering them could loop)
            elif cmd == SB:
                end = data.find(bytes((IAC, SE)), i + 2)
                if end < 0:
                    self._pending = data[i:]
                    break
                i = end + 2
            else:  # NOP, GA, AYT...: two bytes, nothing to do
                i += 2
        if replies:
            self.writer.write(bytes(replies))

    def _last_line(self) -> str:
        tail = self.buf.decode("utf-8", "replace").replace("\r", "").rstrip().rsplit("\n", 1)[-1].strip()
        return f" (last said {tail[-80:]!r})" if tail else ""

    async def until(self, ends: tuple[str, ...], what: str) -> str:
        """Read until the last line, white space removed, ends with one of `ends`; returns and consumes the text."""
        while True:
            text = self.buf.decode("latin-1")
            last = text.replace("\r", "").rsplit("\n", 1)[-1].rstrip()
            if last.endswith(ends):
                self.buf.clear()
                return text
            await self._fill()

    def send(self, line: str, encoding: str) -> None:
        self.writer.write(line.encode(encoding).replace(bytes((IAC,)), bytes((IAC, IAC))) + b"\r\n")


async def run(check: Check, timeout: float) -> str:
    writer = None
    stage = "connecting"
    try:
        async with asyncio.timeout(timeout):
            try:
                reader, writer = await asyncio.open_connection(check.address, check.port)
            except OSError as e:
                raise Unreachable(f"Cannot connect to {check.where}: {e.strerror or e}") from None
            s = Session(reader, writer, check.where)
            stage = "waiting for the login prompt"
            await s.until((":",), stage)
            s.send(check.username, check.encoding)
            stage = "waiting for the password prompt"
            await s.until((":",), stage)
            s.send(check.password, check.encoding)
            stage = "waiting for the shell prompt after logging in"
            text = await s.until(PROMPTS + (":",), stage)
            if text.replace("\r", "").rstrip().endswith(":"):
                s.buf += text.encode("latin-1")
                raise NotSupported(f"Login failed on {check.where}: the device asked again{s._last_line()} after "
                                   f"the password of user {check.username!r}")
            out = []
            for line in check.script.replace("\r\n", "\n").split("\n"):
                if not line.strip():
                    continue
                stage = f"waiting for the prompt after {line.strip()[:40]!r}"
                s.send(line, check.encoding)
                raw = (await s.until(PROMPTS, stage)).encode("latin-1").decode(check.encoding, "replace")
                lines = raw.replace("\r\n", "\n").replace("\r", "").split("\n")[:-1]  # the prompt line goes
                if lines and lines[0].strip() == line.strip():  # the device's echo of the command
                    lines = lines[1:]
                out.extend(lines)
            return "\n".join(out).rstrip()
    except TimeoutError:
        raise NotSupported(f"Timeout: {check.where} did not answer within {timeout:g} s while {stage}") from None
    except (ConnectionError, OSError) as e:
        raise Unreachable(f"Telnet connection to {check.where} failed while {stage}: {e}") from None
    finally:
        if writer is not None:
            writer.close()


async def poll(item: PollItem, timeout: float) -> str:
    return await run(parse(item), timeout)
