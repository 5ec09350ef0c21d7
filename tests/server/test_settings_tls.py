"""VIGIL_TLS_*: the listener's certificate needs its key and the CA file; the others need the certificate."""

from __future__ import annotations

import pytest
from vigil.server.settings import Settings, SettingsError


def test_tls_is_off_by_default() -> None:
    assert not Settings.from_env({}).tls_enabled


def test_a_full_tls_setting_is_taken() -> None:
    s = Settings.from_env({"VIGIL_TLS_CERT_FILE": "/c", "VIGIL_TLS_KEY_FILE": "/k", "VIGIL_TLS_CA_FILE": "/a",
                           "VIGIL_TLS_CRL_FILE": "/r"})
    assert s.tls_enabled
    assert (s.tls_cert_file, s.tls_key_file, s.tls_ca_file, s.tls_crl_file) == ("/c", "/k", "/a", "/r")


@pytest.mark.parametrize("env,message", [
    ({"VIGIL_TLS_CERT_FILE": "/c", "VIGIL_TLS_KEY_FILE": "/k"}, "VIGIL_TLS_CERT_FILE is set but VIGIL_TLS_CA_FILE"),
    ({"VIGIL_TLS_CERT_FILE": "/c", "VIGIL_TLS_CA_FILE": "/a"}, "VIGIL_TLS_CERT_FILE is set but VIGIL_TLS_KEY_FILE"),
    ({"VIGIL_TLS_CA_FILE": "/a"}, "VIGIL_TLS_CA_FILE is set but VIGIL_TLS_CERT_FILE is not"),
    ({"VIGIL_TLS_CRL_FILE": "/r"}, "VIGIL_TLS_CRL_FILE is set but VIGIL_TLS_CERT_FILE is not"),
])
def test_incomplete_tls_settings_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)
