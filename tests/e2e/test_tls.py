"""TLS with certificates into Vigil's server: the real zabbix_sender and zabbix_agentd (active) and
vigil-sender / vigil-agent, certificates made by the test. A host's tls_accept, tls_issuer and
tls_subject decide what it takes; whatever is refused is refused with Zabbix's message and nothing of
it is stored."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import VigilServer, require, stop_process, vigil_bin, wait_until
from tests.tlscerts import Certs, Pair, make_certs, subject_string

pytestmark = pytest.mark.slow
SERVER_SUBJECT = subject_string("Vigil server")
AGENT_SUBJECT = subject_string("agent1")
SENDERS = ["zabbix_sender", "vigil-sender"]
AGENTS = ["zabbix_agentd", "vigil-agent"]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[VigilServer]:
    tmp = tmp_path_factory.mktemp("server")
    s = VigilServer(tmp, f"sqlite:///{tmp / 'vigil.db'}", VIGIL_TLS_CA_FILE=str(certs.ca),
                    VIGIL_TLS_CRL_FILE=str(certs.crl), VIGIL_TLS_CERT_FILE=str(certs.server.cert),
                    VIGIL_TLS_KEY_FILE=str(certs.server.key)).start()
    item = "items: [{key: app.v, type: trapper, value_type: float}, " \
           "{key: agent.ping, type: agent_active, value_type: unsigned, delay: 1s}]"
    try:
        s.import_yaml(f"""
hosts:
  - {{host: tls-cert, tls_accept: cert, tls_subject: "{AGENT_SUBJECT}", tls_issuer: "{certs.ca_subject}", {item}}}
  - {{host: tls-both, tls_accept: [unencrypted, cert], {item}}}
  - {{host: tls-flags, tls_accept: 4, {item}}}
  - {{host: tls-someone, tls_accept: cert, tls_subject: "CN=someone else", {item}}}
  - {{host: tls-plain, {item}}}
""")
        s.wait_for_config("tls-plain", "agent.ping")
        yield s
    finally:
        s.stop()


def send(server: VigilServer, program: str, host: str, value: str, *tls: str) -> tuple[int, str]:
    exe = require("zabbix_sender") if program == "zabbix_sender" else vigil_bin(program)
    r = subprocess.run([exe, "-z", "127.0.0.1", "-p", str(server.port), "-s", host, "-k", "app.v", "-o", value,
                        *tls], capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout + r.stderr


def cert(c: Certs, pair: Pair, *extra: str) -> list[str]:
    return ["--tls-connect", "cert", "--tls-ca-file", str(c.ca), "--tls-cert-file", str(pair.cert),
            "--tls-key-file", str(pair.key), *extra]


def stored(server: VigilServer, host: str, key: str = "app.v") -> list[str]:
    return [row[2] for row in server.history(host, key)]


def test_the_host_config_round_trips(server: VigilServer, certs: Certs) -> None:
    out = server.cli("config", "export").stdout
    assert "tls_accept: cert" in out and f"tls_subject: {AGENT_SUBJECT}" in out
    assert re.search(r"tls_accept:\s*\n?\s*- unencrypted\s*\n\s*- cert", out), out


def test_psk_in_a_host_is_refused_by_the_import(server: VigilServer, tmp_path: Path) -> None:
    bad = tmp_path / "psk.yaml"
    bad.write_text("hosts:\n  - {host: tls-psk, tls_accept: [psk]}\n")
    r = server.cli("config", "import", str(bad), check=False)
    assert r.returncode != 0 and "hosts[0].tls_accept: psk is not supported by Vigil" in r.stderr + r.stdout


@pytest.mark.parametrize("program", SENDERS)
def test_a_sender_with_a_certificate_is_stored(server: VigilServer, certs: Certs, program: str) -> None:
    base = SENDERS.index(program) * 10
    for host, value in (("tls-cert", 1), ("tls-both", 2), ("tls-flags", 3)):
        v = f"{base + value}.5"
        code, out = send(server, program, host, v, *cert(certs, certs.agent, "--tls-server-cert-subject",
                                                         SERVER_SUBJECT, "--tls-server-cert-issuer", certs.ca_subject))
        assert code == 0 and "processed: 1; failed: 0" in out, out
        assert float(v) in map(float, stored(server, host))
    code, out = send(server, program, "tls-both", f"{base + 4}.5")
    assert code == 0 and "processed: 1; failed: 0" in out, out


@pytest.mark.parametrize("program", SENDERS)
def test_refused_senders_store_nothing(server: VigilServer, certs: Certs, program: str) -> None:
    value = f"{666 + SENDERS.index(program)}"
    cases = [
        ("tls-cert", [], True, 'connection of type "unencrypted" is not allowed for host "tls-cert"'),
        ("tls-plain", cert(certs, certs.agent), True,
         'connection of type "TLS with certificate" is not allowed for host "tls-plain"'),
        ("tls-someone", cert(certs, certs.agent), True, 'certificate subject does not match for host "tls-someone"'),
        ("tls-cert", cert(certs, certs.revoked), False, "invalid peer certificate: certificate revoked"),
        ("tls-cert", cert(certs, certs.stranger), False, "invalid peer certificate: "),
    ]
    for host, opts, answered, message in cases:
        before = server.log_text().count(message)
        code, out = send(server, program, host, value, *opts)
        if answered:  # the server answers: the value failed
            assert code == 2 and "processed: 0; failed: 1" in out, (host, opts, out)
        else:  # the handshake is refused: nothing was sent
            assert code == 1 and "Sending failed" in out, (host, opts, out)
        wait_until(lambda m=message, n=before: server.log_text().count(m) > n, 10, message)
    for host in ("tls-cert", "tls-plain", "tls-someone"):
        assert value not in [v.split(".")[0] for v in stored(server, host)]


def test_vigil_sender_says_why_the_handshake_failed(server: VigilServer, certs: Certs) -> None:
    code, out = send(server, "vigil-sender", "tls-cert", "1", *cert(certs, certs.agent, "--tls-server-cert-subject",
                                                                   "CN=not the server"))
    assert code == 1
    assert f'cannot establish TLS to [127.0.0.1]:{server.port}: subject: peer: "{SERVER_SUBJECT}", ' \
           'required: "CN=not the server"' in out, out


def test_vigil_sender_refuses_psk(server: VigilServer) -> None:
    code, out = send(server, "vigil-sender", "tls-cert", "1", "--tls-connect", "psk", "--tls-psk-identity", "i",
                     "--tls-psk-file", "/x")
    assert code == 1 and "PSK is not supported by Vigil" in out


class Agent:
    def __init__(self, program: str, tmp: Path, server: VigilServer, host: str, tls: str) -> None:
        self.out = tmp / f"{program}-{host}.log"
        conf = tmp / f"{program}-{host}.conf"
        conf.write_text(f"ServerActive=127.0.0.1:{server.port}\nHostname={host}\nStartAgents=0\nBufferSend=1\n"
                        f"RefreshActiveChecks=60\nLogType=console\nAllowRoot=1\nPidFile={tmp}/{program}.pid\n{tls}")
        cmd = [require("zabbix_agentd"), "-f"] if program == "zabbix_agentd" else [vigil_bin("vigil-agent")]
        self.proc = subprocess.Popen([*cmd, "-c", str(conf)], stdout=self.out.open("wb"), stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.proc)


def agent_tls(c: Certs, pair: Pair, subject: str = SERVER_SUBJECT) -> str:
    return (f"TLSConnect=cert\nTLSCAFile={c.ca}\nTLSCRLFile={c.crl}\nTLSCertFile={pair.cert}\nTLSKeyFile={pair.key}\n"
            f"TLSServerCertSubject={subject}\nTLSServerCertIssuer={c.ca_subject}\n")


@pytest.mark.parametrize("program", AGENTS)
def test_an_active_agent_with_a_certificate_reports(server: VigilServer, certs: Certs, tmp_path: Path,
                                                    program: str) -> None:
    host = "tls-cert" if program == "zabbix_agentd" else "tls-flags"
    if program == "zabbix_agentd":
        tls = agent_tls(certs, certs.agent)
    else:
        tls = agent_tls(certs, certs.agent).replace(f"TLSServerCertIssuer={certs.ca_subject}\n", "")
    agent = Agent(program, tmp_path, server, host, tls)
    try:
        wait_until(lambda: "1" in stored(server, host, "agent.ping"), 30, f"agent.ping from {program}")
    finally:
        agent.stop()
    assert "Traceback" not in server.log_text()


@pytest.mark.parametrize("program", AGENTS)
def test_a_plain_active_agent_gets_no_checks_from_a_cert_only_host(server: VigilServer, tmp_path: Path,
                                                                   program: str) -> None:
    message = 'connection of type "unencrypted" is not allowed for host "tls-someone"'
    before = server.log_text().count(message)
    agent = Agent(program, tmp_path, server, "tls-someone", "")
    try:
        wait_until(lambda: server.log_text().count(message) > before, 30, message)
        wait_until(lambda: message in agent.output(), 30, f"{program} to report the refusal")
    finally:
        agent.stop()
    assert stored(server, "tls-someone", "agent.ping") == []


def test_vigil_agent_refuses_a_server_with_the_wrong_subject(server: VigilServer, certs: Certs,
                                                             tmp_path: Path) -> None:
    agent = Agent("vigil-agent", tmp_path, server, "tls-someone", agent_tls(certs, certs.agent, "CN=not the server"))
    try:
        wait_until(lambda: 'subject: peer: "' + SERVER_SUBJECT + '", required: "CN=not the server"' in agent.output(),
                   30, "the agent to refuse the server's certificate")
    finally:
        agent.stop()
    assert stored(server, "tls-someone", "agent.ping") == []


@pytest.mark.parametrize("program", SENDERS)
def test_a_sender_takes_tls_from_the_agent_config(server: VigilServer, certs: Certs, tmp_path: Path,
                                                  program: str) -> None:
    conf = tmp_path / "agent.conf"
    conf.write_text(f"ServerActive=127.0.0.1:{server.port}\nHostname=tls-cert\n{agent_tls(certs, certs.agent)}")
    exe = require("zabbix_sender") if program == "zabbix_sender" else vigil_bin(program)
    v = f"{100 + SENDERS.index(program)}.25"
    r = subprocess.run([exe, "-c", str(conf), "-k", "app.v", "-o", v], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "processed: 1; failed: 0" in r.stdout, r.stdout + r.stderr
    assert float(v) in map(float, stored(server, "tls-cert"))


def test_a_server_whose_key_cannot_be_read_does_not_start(tmp_path: Path, certs: Certs) -> None:
    s = VigilServer(tmp_path, f"sqlite:///{tmp_path / 'vigil.db'}", VIGIL_TLS_CA_FILE=str(certs.ca),
                    VIGIL_TLS_CERT_FILE=str(certs.server.cert), VIGIL_TLS_KEY_FILE=str(tmp_path / "missing.key"))
    s.cli("db", "upgrade")
    r = subprocess.run([vigil_bin("vigil"), "server"], env=s.env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert f'cannot load certificate or private key from file "{certs.server.cert}" or "{tmp_path}/missing.key"' \
        in r.stderr
