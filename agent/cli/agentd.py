"""vigil-agent: the host agent, composed here (config, logging, checks, collector, passive, active).

Options follow zabbix_agentd: -c FILE, -f (accepted; the agent always runs in the foreground),
-p (print the known keys with their values), -t KEY (test one key), -h, -V.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from vigil.agent.checks import AGENT_VERSION, REGISTRY, CheckContext, Checks, NotSupported, load_families
from vigil.agent.conf import AgentConfig, ConfError, load
from vigil.agent.log import setup_logging
from vigil.agent.privileges import PrivilegeError, drop_privileges
from vigil.agent.tls import TLSError

PROG = "vigil-agent"
DEFAULT_CONFIG = "/etc/vigil/vigil_agentd.conf"
log = logging.getLogger("vigil.agent")

# The parameters zabbix_agentd -p uses for keys that need some: the same ones, so the outputs compare.
TEST_KEYS = {
    "system.localtime": "system.localtime[utc]",
    "vfs.file.size": "vfs.file.size[/etc/passwd]",
    "vfs.file.time": "vfs.file.time[/etc/passwd,modify]",
    "vfs.file.exists": "vfs.file.exists[/etc/passwd]",
    "vfs.file.contents": "vfs.file.contents[/etc/passwd]",
    "vfs.file.regexp": "vfs.file.regexp[/etc/passwd,root]",
    "vfs.file.regmatch": "vfs.file.regmatch[/etc/passwd,root]",
    "vfs.file.md5sum": "vfs.file.md5sum[/etc/passwd]",
    "vfs.file.cksum": "vfs.file.cksum[/etc/passwd]",
    "vfs.file.owner": "vfs.file.owner[/etc/passwd,user,name]",
    "vfs.file.permissions": "vfs.file.permissions[/etc/passwd]",
    "vfs.file.get": "vfs.file.get[/etc/passwd]",
    "vfs.dir.size": "vfs.dir.size[/var/log]",
    "vfs.dir.count": "vfs.dir.count[/var/log]",
    "vfs.dir.get": "vfs.dir.get[/var/log]",
    "vfs.fs.size": "vfs.fs.size[/,free]",
    "vfs.fs.inode": "vfs.fs.inode[/,free]",
    "net.tcp.port": "net.tcp.port[,80]",
    "net.tcp.listen": "net.tcp.listen[80]",
    "net.udp.listen": "net.udp.listen[68]",
    "net.tcp.socket.count": "net.tcp.socket.count[,80]",
    "net.udp.socket.count": "net.udp.socket.count[,68]",
    "net.if.in": "net.if.in[lo,bytes]",
    "net.if.out": "net.if.out[lo,bytes]",
    "net.if.total": "net.if.total[lo,bytes]",
    "net.if.collisions": "net.if.collisions[lo]",
    "vm.memory.size": "vm.memory.size[total]",
    "proc.cpu.util": "proc.cpu.util[inetd]",
    "proc.num": "proc.num[inetd]",
    "proc.mem": "proc.mem[inetd]",
    "system.cpu.util": "system.cpu.util[all,user,avg1]",
    "system.cpu.load": "system.cpu.load[all,avg1]",
    "system.cpu.num": "system.cpu.num[online]",
    "system.swap.size": "system.swap.size[all,free]",
    "system.swap.in": "system.swap.in[all]",
    "system.swap.out": "system.swap.out[all]",
    "net.tcp.service": "net.tcp.service[ssh,127.0.0.1,22]",
    "net.tcp.service.perf": "net.tcp.service.perf[ssh,127.0.0.1,22]",
    "web.page.get": "web.page.get[localhost,,80]",
    "web.page.perf": "web.page.perf[localhost,,80]",
    "web.page.regexp": "web.page.regexp[localhost,,80,OK]",
    "log": "log[logfile]",
    "log.count": "log.count[logfile]",
    "logrt": "logrt[logfile]",
    "logrt.count": "logrt.count[logfile]",
}


def vigil_version() -> str:
    try:
        from importlib.metadata import version

        return version("vigil")
    except Exception:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, add_help=False,
        description="The Vigil host agent: answers passive checks and sends active checks, "
                    "configured with a zabbix_agentd.conf-style file.",
    )
    p.add_argument("-c", "--config", metavar="config-file", default=DEFAULT_CONFIG,
                   help=f'path to the configuration file (default: "{DEFAULT_CONFIG}")')
    p.add_argument("-f", "--foreground", action="store_true",
                   help="run in the foreground (always the case; accepted for zabbix_agentd habits)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("-p", "--print", action="store_true", help="print known items and exit")
    mode.add_argument("-t", "--test", metavar="item-key", help="test specified item and exit")
    mode.add_argument("-R", "--runtime-control", metavar="runtime-option",
                      help="not supported by vigil-agent (restart it instead)")
    p.add_argument("-h", "--help", action="help", help="display this help message")
    p.add_argument("-V", "--version", action="version",
                   version=f"{PROG} (Vigil) {vigil_version()}\nZabbix agent protocol {AGENT_VERSION}")
    return p


def print_warnings(warnings: tuple[str, ...]) -> None:
    """Start-up warnings, as zabbix_agentd prints them: on stderr, before the log is open."""
    for w in warnings:
        print(f"{PROG} [{os.getpid()}]: Warning: {w}", file=sys.stderr)


def error(message: str) -> int:
    print(f"{PROG} [{os.getpid()}]: {message}", file=sys.stderr)
    return 1


# --- composing the agent ------------------------------------------------------------------------


def build_checks(cfg: AgentConfig) -> Checks:
    ctx = CheckContext(
        hostname=cfg.hostname,
        timeout=float(cfg.timeout),
        user_parameters={u.name: u for u in cfg.user_parameters},
        unsafe_user_parameters=cfg.unsafe_user_parameters,
        log_remote_commands=cfg.log_remote_commands,
    )
    return Checks(ctx, cfg.access)


def resolve_hostname(cfg: AgentConfig, checks: Checks) -> str:
    """Hostname, else the value of HostnameItem (cut to 128 characters, as zabbix_agentd does)."""
    if cfg.hostname:
        return cfg.hostname
    try:
        # the agent's own use: exempt from AllowKey/DenyKey, as zabbix_agentd does
        value = checks.get(cfg.resolve_alias(cfg.hostname_item), local=True)
    except NotSupported as e:
        raise ConfError(f"cannot get the host name from HostnameItem {cfg.hostname_item!r}: {e}") from None
    if len(value) > 128:
        log.warning("the value of HostnameItem is longer than 128 characters: truncated")
        value = value[:128]
    if not value:
        raise ConfError(f"HostnameItem {cfg.hostname_item!r} gave an empty host name")
    return value


def getter(cfg: AgentConfig, checks: Checks) -> Callable[[str], str]:
    if not cfg.aliases:
        return checks.get
    return lambda key: checks.get(cfg.resolve_alias(key))


def value_type(value: str) -> str:
    """zabbix_agentd -p's type letter: u unsigned, d float, t text, s string."""
    if value.isdigit():
        return "u"
    try:
        float(value)
        return "d"
    except ValueError:
        return "t" if "\n" in value else "s"


def print_key(key: str, get: Callable[[str], str], text_keys: frozenset[str] = frozenset(),
              out: Any = None) -> None:
    """One line as zabbix_agentd -p/-t prints it; keys named in `text_keys` (UserParameters, whose
    output Zabbix treats as text) are typed `t`."""
    out = out or sys.stdout
    try:
        value = get(key)
        kind = "t" if key.split("[", 1)[0] in text_keys else value_type(value)
        line = f"{key:<45} [{kind}|{value}]"
    except NotSupported as e:
        line = f"{key:<45} [m|ZBX_NOTSUPPORTED] [{e}]"
    print(line, file=out, flush=True)


def user_parameter_names(cfg: AgentConfig) -> frozenset[str]:
    return frozenset(u.name for u in cfg.user_parameters)


def print_all(cfg: AgentConfig, checks: Checks) -> None:
    get = getter(cfg, checks)
    for name in sorted(REGISTRY):
        key = TEST_KEYS.get(name, name)
        if name.startswith("__") or not checks.allowed(key):  # zabbix_agentd -p leaves denied keys out
            continue
        print_key(key, get)
    for up in cfg.user_parameters:
        print_key(up.name, get, user_parameter_names(cfg))


def write_pid_file(path: str) -> None:
    p = Path(path)
    try:
        old = int(p.read_text().strip() or 0)
    except (OSError, ValueError):
        old = 0
    if old and old != os.getpid():
        try:
            os.kill(old, 0)
        except ProcessLookupError:
            pass
        except PermissionError:
            raise ConfError(f"PidFile {path!r}: process {old} is already running") from None
        else:
            raise ConfError(f"PidFile {path!r}: vigil-agent is already running with PID {old}")
    try:
        p.write_text(f"{os.getpid()}\n")
    except OSError as e:
        raise ConfError(f"cannot create PID file {path!r}: {e.strerror}") from None


def start_collector(ctx: CheckContext) -> Any:
    try:
        from vigil.agent.checks.collector import Collector
    except ImportError:
        log.warning("no background collector available: system.cpu.util and similar keys are unsupported")
        return None
    collector = Collector()
    collector.start()
    ctx.collector = collector
    return collector


def active_config(cfg: AgentConfig, checks: Checks) -> AgentConfig:
    """The config for active checks with HostnameItem / HostMetadataItem already evaluated here, as
    the agent's own (local) use that AllowKey/DenyKey do not apply to."""
    hostnames = cfg.hostnames or (checks.ctx.hostname,)
    metadata = cfg.host_metadata
    if not metadata and cfg.host_metadata_item:
        try:
            metadata = checks.get(cfg.resolve_alias(cfg.host_metadata_item), local=True)[:255]
        except NotSupported as e:
            log.warning("cannot get host metadata from HostMetadataItem %r: %s", cfg.host_metadata_item, e)
    return dataclasses.replace(cfg, hostnames=hostnames, host_metadata=metadata)


def start_active(cfg: AgentConfig, checks: Checks, stop: threading.Event) -> threading.Thread | None:
    try:
        active = importlib.import_module("vigil.agent.active")
        make = active.ActiveChecks
    except (ImportError, AttributeError) as e:
        log.warning("active checks are configured (ServerActive) but not available in this build: %s", e)
        return None
    try:  # here, not in the thread: a buffer file another agent holds stops the start
        prepared = make(cfg, checks)
    except ValueError as e:
        raise ConfError(str(e)) from None

    def run() -> None:
        try:
            prepared.run(stop)
        except Exception:
            log.exception("active checks stopped with an error")

    t = threading.Thread(target=run, name="active-checks", daemon=True)
    t.start()
    return t


def preload(cfg: AgentConfig) -> None:
    import encodings.idna  # noqa: F401  (host names in sockets are encoded with it)

    import psutil  # noqa: F401
    import vigil.agent.passive  # noqa: F401

    load_families()
    for name in ("vigil.agent.active", "vigil.agent.checks.collector"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    if cfg.persistent_buffer_file:
        import sqlite3  # noqa: F401


def run(cfg: AgentConfig) -> int:
    """Run the agent until SIGTERM or SIGINT. Returns the exit code."""
    from vigil.agent.passive import PassiveListener

    if not cfg.passive_enabled and not cfg.active_enabled:
        return error("nothing to do: passive checks need Server (and StartAgents > 0), "
                     "active checks need ServerActive")
    # As zabbix_agentd: leave root before the PID file, the log and the listening socket exist,
    # and before any thread starts. What the agent imports later is imported now, while the files
    # are surely readable (a Python installed under /root is not, for the unprivileged user).
    preload(cfg)
    try:
        cfg.tls.load()  # before leaving root: the key file may be root's only
    except TLSError as e:
        return error(str(e))
    try:
        user = drop_privileges(cfg.user, cfg.allow_root)
    except PrivilegeError as e:
        for line in str(e).splitlines():
            error(line)
        return 1
    try:
        setup_logging(cfg)
    except ConfError as e:
        return error(str(e))
    for w in cfg.warnings:
        log.warning("%s", w)
    if user is not None:
        log.info("running as user %s (started as root; set AllowRoot=1 to keep root)", user)
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # No logging here: the handler may interrupt the main thread inside a log write, and a
        # log file's buffer refuses the re-entrant call. The main loop logs it instead.
        received.append(signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    pid_written = False
    listener = None
    collector = None
    active = None
    try:
        if cfg.pid_file:
            write_pid_file(cfg.pid_file)
            pid_written = True
        checks = build_checks(cfg)
        checks.ctx.hostname = resolve_hostname(cfg, checks)
        log.info("Starting Vigil Agent [%s]. Vigil %s (Zabbix agent protocol %s).",
                 checks.ctx.hostname, vigil_version(), AGENT_VERSION)
        log.info("using configuration file: %s", cfg.files[0] if cfg.files else "?")
        collector = start_collector(checks.ctx)
        if cfg.passive_enabled:
            listener = PassiveListener.from_config(cfg, getter(cfg, checks))
            try:
                listener.start()
            except OSError as e:
                log.critical("cannot listen on port %d: %s", cfg.listen_port, e.strerror or e)
                print(f"{PROG} [{os.getpid()}]: cannot listen on port {cfg.listen_port}: {e.strerror or e}",
                      file=sys.stderr)
                return 1
        else:
            log.info("passive checks are off (Server is empty or StartAgents=0)")
        if cfg.active_enabled:
            active = start_active(active_config(cfg, checks), checks, stop)
        while not stop.wait(1.0):
            pass
        if received:
            log.info("Got signal [%s]. Exiting ...", signal.Signals(received[0]).name)
        return 0
    except ConfError as e:
        log.critical("%s", e)
        return error(str(e))
    finally:
        stop.set()
        if listener is not None:
            listener.stop()
        if active is not None:
            active.join(cfg.timeout + 5)
        if collector is not None:
            collector.stop()
        if pid_written:
            try:
                os.unlink(cfg.pid_file)
            except OSError:
                pass
        log.info("Vigil Agent stopped.")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.runtime_control:
        return error("runtime control (-R) is not supported: restart vigil-agent to apply changes")
    try:
        cfg = load(args.config)
    except ConfError as e:
        print_warnings(e.warnings)
        return error(str(e))
    print_warnings(cfg.warnings)
    if args.print or args.test is not None:
        logging.basicConfig(level=logging.ERROR, stream=sys.stderr, format="%(message)s")
        checks = build_checks(cfg)
        try:
            checks.ctx.hostname = resolve_hostname(cfg, checks)
        except ConfError as e:
            return error(str(e))
        if args.test is not None:
            print_key(args.test, getter(cfg, checks), user_parameter_names(cfg))
        else:
            print_all(cfg, checks)
        return 0
    return run(cfg)


if __name__ == "__main__":
    sys.exit(main())
