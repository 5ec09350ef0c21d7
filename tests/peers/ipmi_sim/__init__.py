"""A real OpenIPMI `ipmi_sim` BMC (Debian's `openipmi` package) on a free loopback UDP port.

`IpmiSim.start(tmp)` fills in lan.conf / bmc.emu from the templates beside this file (the LAN
channel's port, the emulator console's port, the directory of the file-polled sensor), compiles
sensors.sdrs with `sdrcomp -8` into the state directory (the SDRs must be there before ipmi_sim
starts), starts `ipmi_sim -n` and waits until `rmcp_ping` gets an answer. `console(line)` sends an
ipmi_sim_cmd(5) line (e.g. `sensor_set_value 0x20 0 1 90 1`) to the emulator console; `stop()` ends
the process by its own pid and `start_again()` brings the same BMC back on the same port.
Based on the checked set-up in shared/peers/ipmi (NOTES.md there).

Sensors (number, name, raw -> value): 1 CPU Temp (raw °C, 45), 2 Inlet Temp (read every second
from `inlet_temp.val`, 24), 3 FAN1 (raw * 50 RPM, 4800), 4 12V (raw * 0.06 V, 12.00),
5 3.3V (raw * 0.02 V, 3.30), and the discrete 6 PSU1 Status (power supply, sensor-specific: bit 0
presence detected, set; bit 1 failure, `sensor_set_bit 0x20 0 6 1 1 1` sets it).
Users: admin / peers-admin (ADMINISTRATOR), monitor / peers-mon (USER).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.conftest import free_port, stop_process
from tests.peers.snmpd import free_udp_port

HERE = Path(__file__).parent
ADMIN = ("admin", "peers-admin")
MONITOR = ("monitor", "peers-mon")


def _require(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        import pytest

        pytest.fail(f"{name} is not installed: run scripts/test.sh, which installs the openipmi package")
    return path


class IpmiSim:
    def __init__(self, directory: Path, port: int, console_port: int) -> None:
        self.dir = directory
        self.port = port
        self.console_port = console_port
        self.address = "127.0.0.1"
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls, tmp: Path) -> IpmiSim:
        directory = tmp / "ipmi_sim"
        directory.mkdir(exist_ok=True)
        sim = cls(directory, free_udp_port(), free_port())
        for name in ("lan.conf", "bmc.emu"):
            text = (HERE / f"{name}.in").read_text()
            (directory / name).write_text(text.replace("@PORT@", str(sim.port)).replace(
                "@CONSOLE@", str(sim.console_port)).replace("@DIR@", str(directory)))
        shutil.copy(HERE / "chassisctl.sh", directory / "chassisctl.sh")
        (directory / "chassisctl.sh").chmod(0o755)
        sim.start_again()
        return sim

    def start_again(self) -> None:
        """(Re)start the BMC with fresh state: SDRs compiled again, readings back to their start values."""
        state = self.dir / "state"
        shutil.rmtree(state, ignore_errors=True)
        sdr_dir = state / "ipmi_sim" / "vigilbmc"
        sdr_dir.mkdir(parents=True)
        subprocess.run([_require("sdrcomp"), "-8", "-o", str(sdr_dir / "sdr.20.main"), str(HERE / "sensors.sdrs")],
                       check=True, capture_output=True, timeout=30)
        (self.dir / "inlet_temp.val").write_text("24\n")
        (self.dir / "power").write_text("1\n")
        log = open(self.dir / "ipmi_sim.log", "ab")  # noqa: SIM115 - the child holds it
        try:
            self.proc = subprocess.Popen([_require("ipmi_sim"), "-c", str(self.dir / "lan.conf"), "-f",
                                          str(self.dir / "bmc.emu"), "-s", str(state), "-n"],
                                         cwd=self.dir, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        finally:
            log.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ipmi_sim exited: {(self.dir / 'ipmi_sim.log').read_text()[-2000:]}")
            if self.pings():
                return
            time.sleep(0.1)  # polling the peer's start, not synchronising the code under test
        self.stop()
        raise RuntimeError(f"ipmi_sim did not answer on udp 127.0.0.1:{self.port}")

    def pings(self) -> bool:
        r = subprocess.run([_require("rmcp_ping"), "-p", str(self.port), "-t", "1", "127.0.0.1"],
                           capture_output=True, text=True, timeout=10)
        return "IPMI" in r.stdout

    def console(self, line: str, timeout: float = 5.0) -> str:
        """Send one emulator command to the console and return its output (up to the next prompt)."""
        with socket.create_connection(("127.0.0.1", self.console_port), timeout=timeout) as s:
            _read_prompt(s)
            s.sendall(line.encode() + b"\n")
            return _read_prompt(s).decode(errors="replace").replace("\r", "").strip()

    def set_sensor(self, number: int, raw: int) -> None:
        out = self.console(f"sensor_set_value 0x20 0 {number} {raw} 1")
        if "rror" in out or "nvalid" in out:
            raise RuntimeError(f"ipmi_sim refused sensor_set_value: {out}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


def _read_prompt(s: socket.socket) -> bytes:
    """Read until the console's `> ` prompt (telnet option bytes come first on connecting)."""
    buf = b""
    while not buf.rstrip(b" ").endswith(b">"):
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    text = buf.rstrip()
    return text[:-1] if text.endswith(b">") else text
