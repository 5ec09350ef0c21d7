"""The TLS parameters of zabbix_agentd.conf, and what vigil-agent does with them: for now, refuse them.

vigil-agent does not speak TLS yet, so a config that asks for it (TLSConnect/TLSAccept other than
`unencrypted`, or any certificate, PSK or cipher parameter) is refused at start instead of being
served in plain text. This module is the one place to replace when TLS is implemented.
"""

from __future__ import annotations

TLS_PARAMETERS = frozenset({
    "TLSAccept", "TLSCAFile", "TLSCRLFile", "TLSCertFile", "TLSCipherAll", "TLSCipherAll13",
    "TLSCipherCert", "TLSCipherCert13", "TLSCipherPSK", "TLSCipherPSK13", "TLSConnect", "TLSKeyFile",
    "TLSPSKFile", "TLSPSKIdentity", "TLSServerCertIssuer", "TLSServerCertSubject",
})
UNENCRYPTED = "unencrypted"


def check_tls_parameter(name: str, value: str) -> None:
    """Raise ValueError (the reason and what to do) unless the parameter asks for no TLS."""
    if name in ("TLSConnect", "TLSAccept"):
        if value == UNENCRYPTED:
            return
        raise ValueError(f"TLS is not supported by vigil-agent yet: remove {name} or set it to {UNENCRYPTED} "
                         f"(it is {value!r})")
    raise ValueError(f"TLS is not supported by vigil-agent yet: remove {name}")
