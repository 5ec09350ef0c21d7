"""SMTP e-mail against a real aiosmtpd on loopback: plain, STARTTLS, SSL, AUTH LOGIN, refusals, time-outs."""

from __future__ import annotations

import email
import email.policy
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from vigil.alerts.media import MediaError, Message, send
from vigil.server.config.tables import MediaKind
from vigil.server.store.alertlog import MediaType

from tests.alerts.conftest import Mailbox, smtp_server
from tests.conftest import free_port

MSG = Message(alertid=4711, sendto="ops@example.com", subject="Problem: Température élevée on web01",
              message="Host web01\nTempérature: 81 °C — ünïcødé ✓", clock=1_700_000_000)


def media(port: int, **params: Any) -> MediaType:
    base = {"smtp_server": "127.0.0.1", "smtp_port": port, "smtp_helo": "vigil.test",
            "smtp_email": "Vigil <vigil@alerts.example.org>", "timeout": 5}
    base.update(params)
    return MediaType(mediatypeid=1, name="Mail", kind=MediaKind.EMAIL, enabled=True, params=base)


def parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


@pytest.fixture
def box() -> Iterator[Mailbox]:
    b = Mailbox()
    stop = smtp_server(b)
    try:
        yield b
    finally:
        stop()


def test_plain_smtp_delivers_headers_and_utf8_body(box: Mailbox) -> None:
    send(media(box.port), MSG)  # type: ignore[attr-defined]
    [(mail_from, rcpts, raw)] = box.messages
    assert mail_from == "vigil@alerts.example.org" and rcpts == ["ops@example.com"]
    m = parse(raw)
    assert m["Message-ID"] == "<vigil-alert-4711@alerts.example.org>"
    assert m["Subject"] == MSG.subject and m["To"] == "ops@example.com"
    assert m["From"] == "Vigil <vigil@alerts.example.org>"
    assert email.utils.parsedate_to_datetime(m["Date"]).timestamp() == MSG.clock
    assert m.get_content_type() == "text/plain" and m.get_content_charset() == "utf-8"
    assert m["Content-Transfer-Encoding"] == "quoted-printable"
    assert m.get_content().replace("\r\n", "\n").rstrip("\n") == MSG.message


def test_message_id_is_the_same_on_every_try(box: Mailbox) -> None:
    send(media(box.port), MSG)  # type: ignore[attr-defined]
    send(media(box.port), MSG)  # type: ignore[attr-defined]
    ids = {parse(raw)["Message-ID"] for _, _, raw in box.messages}
    assert len(box.messages) == 2 and ids == {"<vigil-alert-4711@alerts.example.org>"}


def test_html_content_type(box: Mailbox) -> None:
    send(media(box.port, content_type="html"), MSG)  # type: ignore[attr-defined]
    assert parse(box.messages[0][2]).get_content_type() == "text/html"


def test_starttls_with_a_self_signed_certificate(certs: Any) -> None:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certs.server.cert, certs.server.key)
    b = Mailbox()
    stop = smtp_server(b, tls_context=ctx, require_starttls=True)
    try:
        m = media(b.port, smtp_security="starttls")  # type: ignore[attr-defined]
        send(m, MSG)
        assert len(b.messages) == 1
        # Checking the peer against the system's CAs fails and says TLS did; against our CA it works.
        with pytest.raises(MediaError, match=r"media type 'Mail': STARTTLS with SMTP server 127\.0\.0\.1:\d+: TLS"):
            send(media(b.port, smtp_security="starttls", verify_peer=True), MSG)  # type: ignore[attr-defined]
        send(media(b.port, smtp_security="starttls", verify_peer=True, ca_file=str(certs.ca)), MSG)  # type: ignore[attr-defined]
        assert len(b.messages) == 2
        # A server requiring STARTTLS refuses plain mail.
        with pytest.raises(MediaError, match="Mail"):
            send(media(b.port), MSG)  # type: ignore[attr-defined]
    finally:
        stop()


def test_starttls_refused_when_the_server_does_not_offer_it(box: Mailbox) -> None:
    with pytest.raises(MediaError, match="does not offer STARTTLS"):
        send(media(box.port, smtp_security="starttls"), MSG)  # type: ignore[attr-defined]
    assert box.messages == []


def test_ssl_from_the_first_byte(certs: Any) -> None:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certs.server.cert, certs.server.key)
    b = Mailbox()
    stop = smtp_server(b, ssl_context=ctx)
    try:
        send(media(b.port, smtp_security="ssl"), MSG)  # type: ignore[attr-defined]
        assert len(b.messages) == 1
        with pytest.raises(MediaError, match="Mail"):  # speaking plain text to an SSL port
            send(media(b.port, timeout=2), MSG)  # type: ignore[attr-defined]
    finally:
        stop()


def _login(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = mechanism == "LOGIN" and isinstance(data, LoginPassword) and (data.login, data.password) == (
        b"vigil", b"s3cret")
    return AuthResult(success=ok, handled=False)


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_auth_login_and_a_wrong_password() -> None:
    b = Mailbox()
    stop = smtp_server(b, authenticator=_login, auth_required=True, auth_require_tls=False,
                       auth_exclude_mechanism=["PLAIN"])
    try:
        send(media(b.port, username="vigil", password="s3cret"), MSG)  # type: ignore[attr-defined]
        assert len(b.messages) == 1
        with pytest.raises(MediaError, match=r"refused the login of 'vigil': 535"):
            send(media(b.port, username="vigil", password="wrong"), MSG)  # type: ignore[attr-defined]
        with pytest.raises(MediaError, match="Mail"):  # no login at all: the server wants one
            send(media(b.port), MSG)  # type: ignore[attr-defined]
        assert len(b.messages) == 1
    finally:
        stop()


def test_recipient_refused_with_550(box: Mailbox) -> None:
    box.refuse_rcpt = "550 5.1.1 No such user here"
    with pytest.raises(MediaError, match=r"media type 'Mail': SMTP server 127\.0\.0\.1:\d+ refused the recipient: "
                                         r"ops@example\.com: 550 5\.1\.1 No such user here") as e:
        send(media(box.port), MSG)  # type: ignore[attr-defined]
    assert not e.value.permanent and box.messages == []


def test_a_server_that_never_answers_times_out() -> None:
    port = free_port()
    listener = socket.create_server(("127.0.0.1", port))
    held: list[socket.socket] = []
    t = threading.Thread(target=lambda: held.append(listener.accept()[0]), daemon=True)
    t.start()
    try:
        with pytest.raises(MediaError, match=rf"connecting to SMTP server 127\.0\.0\.1:{port}: no answer within 1 s"):
            send(media(port, timeout=1), MSG)
    finally:
        for s in held:
            s.close()
        listener.close()


def test_nothing_listening() -> None:
    with pytest.raises(MediaError, match=r"media type 'Mail': connecting to SMTP server 127\.0\.0\.1:\d+"):
        send(media(free_port()), MSG)


@pytest.mark.parametrize(("params", "words"), [
    ({"smtp_security": "tls"}, "'smtp_security': expected none, starttls or ssl, got 'tls'"),
    ({"smtp_port": 70000}, "'smtp_port': must be between 1 and 65535"),
    ({"smtp_email": None}, "parameter 'smtp_email' is missing"),
    ({"content_type": "rtf"}, "'content_type': expected plain or html"),
    ({"timeout": "soon"}, "'timeout': expected seconds"),
    ({"verify_peer": "maybe", "smtp_security": "ssl"}, "'verify_peer': expected true or false"),
])
def test_bad_parameters_are_permanent_and_named(box: Mailbox, params: dict[str, Any], words: str) -> None:
    m = media(box.port, **params)  # type: ignore[attr-defined]
    if params.get("smtp_email", "") is None:
        del m.params["smtp_email"]
    with pytest.raises(MediaError, match=f"media type 'Mail': (parameter )?{words}") as e:
        send(m, MSG)
    assert e.value.permanent and box.messages == []


def test_sendto_without_an_address(box: Mailbox) -> None:
    with pytest.raises(MediaError, match="holds no e-mail address") as e:
        send(media(box.port), Message(1, "", "s", "m", 0))  # type: ignore[attr-defined]
    assert e.value.permanent
