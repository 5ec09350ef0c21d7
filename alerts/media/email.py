"""SMTP e-mail: plain, STARTTLS or SSL, with or without login (smtplib).

Parameters (Zabbix's names): smtp_server, smtp_port (25, 587 or 465 by security), smtp_helo,
smtp_email (From), smtp_security none|starttls|ssl, username, password, verify_peer, verify_host,
ca_file (CA certificates for verify_peer; default: the system's), content_type plain|html, timeout.
The Message-ID `<vigil-alert-ID@domain>` is the same on every try, so a mail system can drop a repeat.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from email.message import EmailMessage
from email.utils import formatdate, getaddresses

from vigil.alerts.media import MediaError, Message, param_bool, param_int, param_str, timeout_of
from vigil.server.store.alertlog import MediaType

DEFAULT_PORTS = {"none": 25, "starttls": 587, "ssl": 465}


def message_id(alertid: int, from_addr: str) -> str:
    domain = from_addr.rpartition("@")[2].strip("<> ") or socket.getfqdn() or "localhost"
    return f"<vigil-alert-{alertid}@{domain}>"


def build(media: MediaType, msg: Message) -> tuple[EmailMessage, str, list[str]]:
    """The e-mail, its envelope sender and recipients."""
    sender = param_str(media, "smtp_email")
    recipients = [addr for _, addr in getaddresses([msg.sendto]) if addr]
    if not recipients:
        raise MediaError(media, f"send-to {msg.sendto!r} holds no e-mail address", permanent=True)
    kind = param_str(media, "content_type", "plain").lower()
    if kind not in ("plain", "html"):
        raise MediaError(media, f"parameter 'content_type': expected plain or html, got {kind!r}", permanent=True)
    mail = EmailMessage()
    mail["Subject"] = msg.subject.replace("\r", " ").replace("\n", " ")
    mail["From"] = sender
    mail["To"] = ", ".join(recipients)
    mail["Date"] = formatdate(msg.clock, localtime=True)
    mail["Message-ID"] = message_id(msg.alertid, sender)
    mail["X-Vigil-Alert-Id"] = str(msg.alertid)
    mail.set_content(msg.message, subtype=kind, charset="utf-8", cte="quoted-printable")
    envelope = getaddresses([sender])[0][1] or sender
    return mail, envelope, recipients


def _tls_context(media: MediaType) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca_file = media.params.get("ca_file")
    if ca_file:
        try:
            ctx.load_verify_locations(cafile=str(ca_file))
        except (OSError, ssl.SSLError) as e:
            raise MediaError(media, f"parameter 'ca_file': cannot read {ca_file!r}: {e}", permanent=True) from None
    verify_peer = param_bool(media, "verify_peer", False)  # Zabbix's default: unchecked
    ctx.check_hostname = verify_peer and param_bool(media, "verify_host", False)
    if not verify_peer:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def send(media: MediaType, msg: Message) -> None:
    security = param_str(media, "smtp_security", "none").lower()
    if security not in DEFAULT_PORTS:
        raise MediaError(media, f"parameter 'smtp_security': expected none, starttls or ssl, got {security!r}",
                         permanent=True)
    host = param_str(media, "smtp_server")
    port = param_int(media, "smtp_port", DEFAULT_PORTS[security], 1, 65535)
    helo = param_str(media, "smtp_helo", "") or None
    username = param_str(media, "username", "")
    password = param_str(media, "password", "")
    timeout = timeout_of(media)
    mail, envelope, recipients = build(media, msg)
    where = f"SMTP server {host}:{port}"
    step = "connecting to"
    try:
        if security == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(host, port, local_hostname=helo, timeout=timeout,
                                                  context=_tls_context(media))
        else:
            smtp = smtplib.SMTP(host, port, local_hostname=helo, timeout=timeout)
        with smtp:
            if security == "starttls":
                step = "STARTTLS with"
                smtp.ehlo()
                if not smtp.has_extn("starttls"):
                    raise MediaError(media, f"{where} does not offer STARTTLS (smtp_security is starttls)")
                smtp.starttls(context=_tls_context(media))
                smtp.ehlo()
            if username:
                step = "logging in to"
                smtp.login(username, password)
            step = "sending to"
            refused = smtp.send_message(mail, from_addr=envelope, to_addrs=recipients)
            if refused:
                detail = ", ".join(f"{a}: {c} {r.decode(errors='replace')}" for a, (c, r) in refused.items())
                raise MediaError(media, f"{where} refused the recipient: {detail}")
    except MediaError:
        raise
    except smtplib.SMTPRecipientsRefused as e:
        detail = "; ".join(f"{a}: {c} {r.decode(errors='replace')}" for a, (c, r) in e.recipients.items())
        raise MediaError(media, f"{where} refused the recipient: {detail}") from None
    except smtplib.SMTPAuthenticationError as e:
        raise MediaError(media, f"{where} refused the login of {username!r}: {e.smtp_code} "
                                f"{e.smtp_error.decode(errors='replace')}") from None
    except smtplib.SMTPResponseException as e:
        raise MediaError(media, f"{step} {where}: {e.smtp_code} {e.smtp_error.decode(errors='replace')}") from None
    except TimeoutError:
        raise MediaError(media, f"{step} {where}: no answer within {timeout:g} s") from None
    except smtplib.SMTPServerDisconnected as e:
        if "timed out" in str(e):  # smtplib turns a read time-out into a disconnection
            raise MediaError(media, f"{step} {where}: no answer within {timeout:g} s") from None
        raise MediaError(media, f"{step} {where}: {e}") from None
    except ssl.SSLError as e:
        raise MediaError(media, f"{step} {where}: TLS failed: {e}") from None
    except (smtplib.SMTPException, OSError) as e:
        raise MediaError(media, f"{step} {where}: {e}") from None
