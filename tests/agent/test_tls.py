"""TLS with certificates on vigil-agent (passive), vigil-get and the agent's config, against the real
zabbix_get and zabbix_agentd: what one accepts the other accepts, what one refuses the other refuses,
with the same messages. Certificates are made by the test (tests/tlscerts.py)."""

from __future__ import annotations

import re
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from vigil.agent.conf import ConfError, load
from vigil.agent.tls import dn_string

from tests.conftest import free_port, require, stop_process, wait_port, wait_until
from tests.tlscerts import Certs, Pair, make_certs, subject_string

VIGIL_AGENT = str(Path(sys.executable).parent / "vigil-agent")
VIGIL_GET = str(Path(sys.executable).parent / "vigil-get")
SERVER_SUBJECT = subject_string("Vigil server")
AGENT_SUBJECT = subject_string("agent1")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def tls_lines(c: Certs, pair: Pair, accept: str = "cert", extra: str = "") -> str:
    return (f"TLSAccept={accept}\nTLSCAFile={c.ca}\nTLSCRLFile={c.crl}\nTLSCertFile={pair.cert}\n"
            f"TLSKeyFile={pair.key}\n{extra}")


class Agents:
    """Starts vigil-agent or zabbix_agentd in passive mode with extra config lines; stops them all."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, program: str, extra: str) -> tuple[int, Path]:
        port = free_port()
        conf = self.tmp / f"{program}-{port}.conf"
        log = self.tmp / f"{program}-{port}.log"
        conf.write_text(f"Server=127.0.0.1\nServerActive=\nListenIP=127.0.0.1\nListenPort={port}\nHostname=h\n"
                        f"StartAgents=2\nAllowRoot=1\nLogType=console\nPidFile={self.tmp}/{port}.pid\n{extra}")
        cmd = [VIGIL_AGENT, "-c"] if program == "vigil-agent" else [require("zabbix_agentd"), "-f", "-c"]
        proc = subprocess.Popen([*cmd, str(conf)], stdout=log.open("wb"), stderr=subprocess.STDOUT)
        self.procs.append((proc, log))
        wait_port(port, 20, proc)
        return port, log

    def stop(self) -> None:
        for proc, _ in self.procs:
            stop_process(proc)


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Agents]:
    a = Agents(tmp_path)
    yield a
    a.stop()


def run_get(program: str, port: int, *tls: str) -> tuple[int, str]:
    """Exit code and output of zabbix_get or vigil-get, with the program name and PID taken out."""
    exe = require("zabbix_get") if program == "zabbix_get" else VIGIL_GET
    r = subprocess.run([exe, "-s", "127.0.0.1", "-p", str(port), "-k", "agent.ping", "-t", "5", *tls],
                       capture_output=True, text=True, timeout=30)
    text = re.sub(r"^(zabbix_get|vigil-get) \[\d+\]: ", "", r.stdout + r.stderr, flags=re.M)
    # GnuTLS (zabbix_get's library) warns about how the agent ended the session; not about the answer
    text = "\n".join(x for x in text.splitlines() if not x.startswith("Warning: gnutls_bye()"))
    return r.returncode, text.strip()


def cert_opts(c: Certs, pair: Pair, ca: Path | None = None, *extra: str) -> list[str]:
    return ["--tls-connect", "cert", "--tls-ca-file", str(ca or c.ca), "--tls-cert-file", str(pair.cert),
            "--tls-key-file", str(pair.key), *extra]


def logged(log: Path, text: str) -> Callable[[], bool]:
    return lambda: text in log.read_text(errors="replace")


# --- names in Zabbix's string form ----------------------------------------------------------------


def test_names_are_in_rfc4514_form_as_openssl_prints_them(certs: Certs, tmp_path: Path) -> None:
    """dn_string of what Python's ssl reports equals `openssl x509 -nameopt RFC2253,-esc_msb` (the form
    Zabbix compares), special characters and UTF-8 included."""
    odd = "/DC=com/O=Ex+am,ple/OU=#ops; \"q\" <a>/CN=Jürgen \\ agent /emailAddress=a@b.c"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "k.pem", "-out",
                    "odd.crt", "-days", "2", "-utf8", "-subj", odd], cwd=tmp_path, check=True, capture_output=True)
    for path in (certs.agent.cert, certs.server.cert, tmp_path / "odd.crt"):
        decoded = ssl._ssl._test_decode_cert(str(path))  # type: ignore[attr-defined]
        for what in ("subject", "issuer"):
            want = subprocess.run(["openssl", "x509", "-in", str(path), "-noout", f"-{what}", "-nameopt",
                                   "RFC2253,-esc_msb"], capture_output=True, check=True).stdout.decode()
            assert dn_string(decoded[what]) == want.strip().split("=", 1)[1], (path, what)
    assert dn_string(ssl._ssl._test_decode_cert(str(certs.agent.cert))["subject"]) == AGENT_SUBJECT  # type: ignore


# --- vigil-agent in passive mode, asked by the real zabbix_get -------------------------------------


def test_zabbix_get_with_a_certificate_gets_the_value(agents: Agents, certs: Certs) -> None:
    port, _ = agents.start("vigil-agent", tls_lines(certs, certs.agent, extra=f"TLSServerCertSubject={SERVER_SUBJECT}\n"
                                                    f"TLSServerCertIssuer={certs.ca_subject}\n"))
    assert run_get("zabbix_get", port, *cert_opts(certs, certs.server, None, "--tls-agent-cert-subject",
                                                  AGENT_SUBJECT)) == (0, "1")


@pytest.mark.parametrize("program", ["vigil-agent", "zabbix_agentd"])
def test_refused_connections_are_logged_as_zabbix_agentd_logs_them(agents: Agents, certs: Certs,
                                                                   program: str) -> None:
    """Plain text to a cert-only agent, a revoked certificate, one from another CA and a subject that
    is not TLSServerCertSubject are each refused, zabbix_get gets no value, and the agent says why."""
    port, log = agents.start(program, tls_lines(certs, certs.agent, extra=f"TLSServerCertSubject={SERVER_SUBJECT}\n"))
    cases = [
        ([], "failed to accept an incoming connection: from 127.0.0.1: unencrypted connections are not allowed"),
        (cert_opts(certs, certs.agent), "failed to accept an incoming connection: certificate subject does not "
                                        "match for 127.0.0.1"),
        (cert_opts(certs, certs.revoked), "failed to accept an incoming connection: from 127.0.0.1: invalid peer "
                                          "certificate: "),
        (cert_opts(certs, certs.stranger), "failed to accept an incoming connection: from 127.0.0.1: invalid peer "
                                           "certificate: "),
    ]
    for opts, message in cases:
        before = log.read_text(errors="replace").count(message)
        code, out = run_get("zabbix_get", port, *opts)
        assert code == 1 and "1" not in out.splitlines(), (opts, out)
        wait_until(lambda m=message, n=before: log.read_text(errors="replace").count(m) > n, 10, message)
    text = log.read_text(errors="replace")
    if program == "vigil-agent":  # OpenSSL's reasons where zabbix_agentd has GnuTLS's
        assert "invalid peer certificate: certificate revoked" in text
        assert "invalid peer certificate: unable to get local issuer certificate" in text


def test_plain_zabbix_get_is_told_as_by_zabbix_agentd(agents: Agents, certs: Certs) -> None:
    """What zabbix_get prints when refused for plain text is the same for both agents."""
    answers = {}
    for program in ("vigil-agent", "zabbix_agentd"):
        port, _ = agents.start(program, tls_lines(certs, certs.agent))
        answers[program] = run_get("zabbix_get", port)
    assert answers["vigil-agent"] == answers["zabbix_agentd"] == (
        1, "Check access restrictions in Zabbix agent configuration")


def test_tls_accept_with_both_kinds_takes_both(agents: Agents, certs: Certs) -> None:
    port, _ = agents.start("vigil-agent", tls_lines(certs, certs.agent, accept="unencrypted,cert"))
    assert run_get("zabbix_get", port) == (0, "1")
    assert run_get("zabbix_get", port, *cert_opts(certs, certs.server)) == (0, "1")


def test_a_tls_handshake_to_a_plain_only_agent_gets_nothing(agents: Agents, certs: Certs) -> None:
    port, _ = agents.start("vigil-agent", "")
    code, out = run_get("zabbix_get", port, *cert_opts(certs, certs.server))
    assert code == 1 and out.splitlines()[-1] != "1"


# --- vigil-get asking the real zabbix_agentd ------------------------------------------------------


def test_vigil_get_with_a_certificate_asks_zabbix_agentd(agents: Agents, certs: Certs) -> None:
    port, _ = agents.start("zabbix_agentd", tls_lines(certs, certs.agent))
    opts = cert_opts(certs, certs.server, None, "--tls-agent-cert-subject", AGENT_SUBJECT,
                     "--tls-agent-cert-issuer", certs.ca_subject, "--tls-crl-file", str(certs.crl))
    assert run_get("vigil-get", port, *opts) == run_get("zabbix_get", port, *opts) == (0, "1")


def test_vigil_get_refusals_read_as_zabbix_gets(agents: Agents, certs: Certs) -> None:
    port, _ = agents.start("zabbix_agentd", tls_lines(certs, certs.agent))
    for opts in (cert_opts(certs, certs.server, None, "--tls-agent-cert-subject", "CN=someone else"),
                 cert_opts(certs, certs.server, None, "--tls-agent-cert-issuer", "CN=another CA"),
                 []):
        assert run_get("vigil-get", port, *opts) == run_get("zabbix_get", port, *opts), opts
    code, out = run_get("vigil-get", port, *cert_opts(certs, certs.server, certs.other_ca))
    want = f"Get value error: TCP successful, cannot establish TLS to [[127.0.0.1]:{port}]: invalid peer certificate: "
    assert code == 1 and out.startswith(want), out


@pytest.mark.parametrize("opts", [
    ["--tls-connect", "cert"],
    ["--tls-connect", "bogus"],
    ["--tls-ca-file", "/x"],
    ["--tls-cert-file", "/x"],
])
def test_vigil_get_option_mistakes_as_zabbix_get(opts: list[str]) -> None:
    port = free_port()  # nothing listens: the options are refused before connecting
    assert run_get("vigil-get", port, *opts) == run_get("zabbix_get", port, *opts)


def test_vigil_get_refuses_psk_with_the_reason() -> None:
    code, out = run_get("vigil-get", free_port(), "--tls-connect", "psk", "--tls-psk-identity", "id",
                        "--tls-psk-file", "/x")
    assert code == 1 and "PSK is not supported by Vigil" in out and "3.13" in out


# --- the configuration ----------------------------------------------------------------------------


def _conf(tmp_path: Path, lines: str) -> Path:
    conf = tmp_path / "agent.conf"
    conf.write_text(f"Server=127.0.0.1\nServerActive=127.0.0.1:1\nHostname=h\nLogType=console\nAllowRoot=1\n{lines}")
    return conf


def _zabbix_refusal(conf: Path) -> str:
    """The ERROR line zabbix_agentd prints for `conf` at start."""
    r = subprocess.run([require("zabbix_agentd"), "-f", "-c", str(conf)], capture_output=True, text=True,
                       timeout=20)
    errors = [x for x in (r.stdout + r.stderr).splitlines() if ": ERROR: " in x]
    assert r.returncode != 0 and errors, r.stdout + r.stderr
    return errors[0].split(": ERROR: ", 1)[1]


@pytest.mark.parametrize("lines,line", [
    ("TLSAccept=cert\n", 6),
    ("TLSConnect=cert\nTLSCertFile=/c\n", 7),
    ("TLSCAFile=/ca\n", 6),
    ("TLSServerCertSubject=CN=x\n", 6),
    ("TLSAccept=foo\n", 6),
    ("TLSConnect=cert,unencrypted\n", 6),
    ("TLSCertFile=/c\nTLSKeyFile=/k\n", 6),
    ("TLSKeyFile=/k\n", 6),
    ("TLSCRLFile=/r\n", 6),
    ("TLSConnect=cert\nTLSCertFile=/c\nTLSKeyFile=/k\n", 7),
    ("TLSCertFile=/c\nTLSKeyFile=/k\nTLSCAFile=/a\n", 6),
])
def test_tls_config_mistakes_are_refused_as_zabbix_agentd(tmp_path: Path, lines: str, line: int) -> None:
    conf = _conf(tmp_path, lines)
    with pytest.raises(ConfError) as e:
        load(conf)
    assert str(e.value).startswith(f"{conf}:{line}: {_zabbix_refusal(conf)}")


@pytest.mark.parametrize("lines", ["TLSConnect=psk\n", "TLSAccept=unencrypted,psk\n", "TLSPSKIdentity=id\n",
                                   "TLSPSKFile=/etc/zabbix/agent.psk\n"])
def test_psk_is_refused_at_start_with_the_reason(tmp_path: Path, lines: str) -> None:
    conf = _conf(tmp_path, lines)
    r = subprocess.run([VIGIL_AGENT, "-c", str(conf)], capture_output=True, text=True, timeout=20)
    assert r.returncode == 1
    assert f"{conf}:6: " in r.stderr and "PSK is not supported by Vigil" in r.stderr and "3.13" in r.stderr


def test_tls13_cipher_parameters_are_refused(tmp_path: Path) -> None:
    conf = _conf(tmp_path, "TLSCipherCert13=TLS_AES_128_GCM_SHA256\n")
    with pytest.raises(ConfError, match=r":6: TLSCipherCert13: Python's ssl module cannot set TLS 1.3"):
        load(conf)


def test_an_unreadable_key_stops_the_agent_at_start(tmp_path: Path, certs: Certs) -> None:
    conf = _conf(tmp_path, f"StartAgents=0\nTLSConnect=cert\nTLSCAFile={certs.ca}\nTLSCertFile={certs.agent.cert}\n"
                           f"TLSKeyFile={tmp_path}/missing.key\n")
    r = subprocess.run([VIGIL_AGENT, "-c", str(conf)], capture_output=True, text=True, timeout=20)
    assert r.returncode == 1
    assert f'cannot load certificate or private key from file "{certs.agent.cert}" or "{tmp_path}/missing.key"' \
        in r.stderr


def test_an_agent_without_tls_does_not_load_ssl(tmp_path: Path) -> None:
    """ssl costs ~4.5 MB of RSS: only a config that uses certificates loads it."""
    code = ("import sys; from vigil.agent.conf import load; import vigil.agent.cli.agentd, vigil.agent.passive, "
            "vigil.agent.active; cfg = load(sys.argv[1]); cfg.tls.load(); print('ssl' in sys.modules)")
    plain = _conf(tmp_path, "TLSConnect=unencrypted\n")
    assert subprocess.run([sys.executable, "-c", code, str(plain)], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
