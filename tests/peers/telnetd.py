"""A Telnet target like a router's console, made by the tests: an asyncio server on a free loopback port.

It negotiates as network devices do (IAC WILL ECHO, WILL SUPPRESS-GO-AHEAD, DO TERMINAL-TYPE, DO NAWS
and a subnegotiation), asks `Username:` and `Password:`, answers a wrong password with
`% Login invalid` and the login prompt again, and then runs a few commands at the `router#` prompt:
`show clock`, `echo TEXT`, `show big` (a lot of output) and `hang` (never answers). `stall="login"`
accepts and never says anything. The option replies the client sent are kept in `replies`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240
ECHO, SGA, TTYPE, NAWS = 1, 3, 24, 31


@dataclass
class Telnetd:
    username: str = "admin"
    password: str = "cisco"
    prompt: str = "router#"
    stall: str = ""
    replies: list[tuple[int, int]] = field(default_factory=list)
    logins: int = 0
    server: asyncio.AbstractServer | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    async def start(self) -> Telnetd:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _line(self, reader: asyncio.StreamReader) -> str:
        """One line the client typed, its IAC replies taken out and recorded."""
        out = bytearray()
        while True:
            b = (await reader.readexactly(1))[0]
            if b == IAC:
                cmd = (await reader.readexactly(1))[0]
                if cmd in (DO, DONT, WILL, WONT):
                    self.replies.append((cmd, (await reader.readexactly(1))[0]))
                continue
            if b == 10:
                return out.decode(errors="replace").rstrip("\r")
            if b != 0:
                out.append(b)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self.stall == "login":
                await reader.read()  # until the client gives up
                return
            writer.write(bytes((IAC, WILL, ECHO, IAC, WILL, SGA, IAC, DO, TTYPE, IAC, DO, NAWS,
                                IAC, SB, TTYPE, 1, IAC, SE)))
            writer.write(b"\r\nUser Access Verification\r\n\r\n")
            while True:
                writer.write(b"Username: ")
                user = await self._line(reader)
                writer.write(b"Password: ")
                password = await self._line(reader)
                if (user, password) == (self.username, self.password):
                    break
                writer.write(b"\r\n% Login invalid\r\n\r\n")
            self.logins += 1
            writer.write(f"\r\n{self.prompt}".encode())
            while True:
                cmd = await self._line(reader)
                writer.write(cmd.encode() + b"\r\n")  # the echo (WILL ECHO)
                if cmd == "show clock":
                    writer.write(b"*10:15:02.123 UTC Wed Dec 2 2026\r\n")
                elif cmd.startswith("echo "):
                    writer.write(cmd[5:].encode() + b"\r\n")
                elif cmd == "show big":
                    writer.write(b"x" * 1_000_000 + b"\r\n")
                elif cmd == "hang":
                    await reader.read()
                    return
                elif cmd:
                    writer.write(b"% Invalid input detected at '^' marker.\r\n")
                writer.write(f"{self.prompt}".encode())
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
