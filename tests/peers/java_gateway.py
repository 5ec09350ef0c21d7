"""The real Zabbix Java gateway (Debian's `zabbix-java-gateway`) on a free loopback port, with JMX remote
enabled on a second free port so that the gateway's own JVM is the target it reads.

`JavaGateway.start(tmp)` runs java directly with the settings the Debian unit passes (listen address and
port, pollers, time-out), a console-only logback configuration in `tmp`, `-Xmx64m` (so
HeapMemoryUsage.max is known) and waits until both ports accept connections. `stop()` ends it by its pid.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

JAR = Path("/usr/sbin/zabbix-java-gateway.jar")
HEAP_MAX = 64 * 1024 * 1024
LOGBACK = """<configuration>
  <appender name="out" class="ch.qos.logback.core.FileAppender">
    <file>{log}</file><encoder><pattern>%d %-5level [%thread] %logger - %msg%n</pattern></encoder>
  </appender>
  <root level="info"><appender-ref ref="out"/></root>
</configuration>
"""


def _free_port() -> int:
    from tests.conftest import free_port

    return free_port()


def _wait(port: int, proc: subprocess.Popen, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the Java gateway exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"the Java gateway does not listen on {port} after {timeout} s")


@dataclass
class JavaGateway:
    proc: subprocess.Popen
    port: int  # the gateway's (Zabbix protocol)
    jmx_port: int  # its own JVM's JMX remote port
    log: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @classmethod
    def start(cls, tmp: Path, timeout: int = 3, pollers: int = 5) -> JavaGateway:
        import pytest

        java = shutil.which("java")
        if java is None or not JAR.exists():
            pytest.fail("zabbix-java-gateway is not installed: run the README's test command, which installs it")
        tmp.mkdir(parents=True, exist_ok=True)
        log = tmp / "java_gateway.log"
        conf = tmp / "logback.xml"
        conf.write_text(LOGBACK.format(log=log))
        port, jmx_port = _free_port(), _free_port()
        while jmx_port == port:
            jmx_port = _free_port()
        argv = [java, f"-Xmx{HEAP_MAX // 1024 // 1024}m", "-XX:+UseG1GC", "-Xshare:auto",
                f"-Dzabbix.pidFile={tmp / 'gateway.pid'}", "-Dzabbix.listenIP=127.0.0.1",
                f"-Dzabbix.listenPort={port}", f"-Dzabbix.startPollers={pollers}", f"-Dzabbix.timeout={timeout}",
                f"-Dsun.rmi.transport.tcp.responseTimeout={timeout * 1000}", f"-Dlogback.configurationFile={conf}",
                f"-Dcom.sun.management.jmxremote.port={jmx_port}",
                f"-Dcom.sun.management.jmxremote.rmi.port={jmx_port}",
                "-Dcom.sun.management.jmxremote.authenticate=false", "-Dcom.sun.management.jmxremote.ssl=false",
                "-Djava.rmi.server.hostname=127.0.0.1", "-jar", str(JAR)]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, cwd=tmp)
        try:
            _wait(port, proc, 30, log)
            _wait(jmx_port, proc, 30, log)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        return cls(proc, port, jmx_port, log)

    def threads(self) -> int:
        """Threads of the JVM's process, as the kernel counts them (Java's and the VM's own)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
        raise AssertionError("no Threads line in /proc/PID/status")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def java_properties() -> dict[str, str]:
    """The JVM's system properties as `java -XshowSettings:properties` prints them (what the JVM reports)."""
    out = subprocess.run([shutil.which("java") or "java", "-XshowSettings:properties", "-version"],
                         capture_output=True, text=True, timeout=60).stderr
    props: dict[str, str] = {}
    for line in out.splitlines():
        name, sep, value = line.strip().partition(" = ")
        if sep:
            props[name] = value
    return props
