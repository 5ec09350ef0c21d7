"""Certificates for the TLS tests, made with the openssl command in a directory of the test's.

A CA signs a server and an agent certificate; a second CA (same subject layout, other key) signs
its own agent certificate for the wrong-CA case; a CRL of the first CA revokes one more agent
certificate. Subjects carry several attributes so the RFC 4514 order (last RDN first) is exercised.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

DN = "/DC=com/DC=example/O=Example Corp/OU=IT operations/CN={cn}"


def subject_string(cn: str) -> str:
    """The subject in the form Zabbix compares (RFC 4514: last RDN first)."""
    return f"CN={cn},OU=IT operations,O=Example Corp,DC=example,DC=com"


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Certs:
    dir: Path
    ca: Path  # the CA file of the first CA
    other_ca: Path  # a second CA, trusted by nobody
    crl: Path  # the first CA's CRL, revoking `revoked`
    server: Pair
    agent: Pair
    revoked: Pair
    stranger: Pair  # an agent certificate signed by the second CA
    ca_subject: str
    world_readable: bool = False


def _run(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(d: Path, name: str, cn: str) -> None:
    (d / name).mkdir()
    (d / name / "index.txt").write_text("")
    (d / name / "crlnumber").write_text("01\n")
    (d / f"{name}.cnf").write_text(
        "[ca]\ndefault_ca = CA\n[CA]\n"
        f"dir = {d / name}\ndatabase = $dir/index.txt\ncrlnumber = $dir/crlnumber\n"
        f"certificate = {d / name}.crt\nprivate_key = {d / name}.key\n"
        "default_md = sha256\ndefault_crl_days = 30\n"
        "[v3_ca]\nbasicConstraints = critical,CA:true\nkeyUsage = critical,keyCertSign,cRLSign\n"
        "subjectKeyIdentifier = hash\n"
        "[v3_leaf]\nbasicConstraints = CA:false\nkeyUsage = critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage = serverAuth,clientAuth\n"
    )
    _run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt",
         "-days", "30", "-subj", DN.format(cn=cn), "-config", f"{name}.cnf", "-extensions", "v3_ca", cwd=d)


def _leaf(d: Path, ca: str, name: str, cn: str, serial: int) -> Pair:
    _run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
         "-subj", DN.format(cn=cn), cwd=d)
    _run("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-set_serial",
         str(serial), "-days", "30", "-sha256", "-out", f"{name}.crt", "-extfile", f"{ca}.cnf",
         "-extensions", "v3_leaf", cwd=d)
    return Pair(d / f"{name}.crt", d / f"{name}.key")


def make_certs(d: Path) -> Certs:
    if shutil.which("openssl") is None:
        raise RuntimeError("the openssl command is needed to make the test certificates")
    d.mkdir(parents=True, exist_ok=True)
    _ca(d, "ca", "Root CA")
    _ca(d, "ca2", "Root CA")  # the same subject as the first: only the key tells them apart
    server = _leaf(d, "ca", "server", "Vigil server", 2)
    agent = _leaf(d, "ca", "agent", "agent1", 3)
    revoked = _leaf(d, "ca", "revoked", "agent1", 4)
    stranger = _leaf(d, "ca2", "stranger", "agent1", 5)
    _run("ca", "-config", "ca.cnf", "-revoke", "revoked.crt", cwd=d)
    _run("ca", "-config", "ca.cnf", "-gencrl", "-out", "ca.crl", cwd=d)
    for f in d.iterdir():  # zabbix_agentd and the agent read them after leaving root
        if f.is_file():
            f.chmod(0o644)
    d.chmod(0o755)
    return Certs(d, d / "ca.crt", d / "ca2.crt", d / "ca.crl", server, agent, revoked, stranger,
                 subject_string("Root CA"), True)
