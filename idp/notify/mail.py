"""E-mail over SMTP, French templates, UTF-8 throughout.

The relay's settings are Flask-Mail's (``current_app.extensions["mail"]``: server, port, TLS, login, sender),
but the message and the SMTP dialogue are written here, for what a login pays per security code:

- the wire form is written directly (:func:`wire_message`): the same MIME tree Flask-Mail builds
  (multipart/mixed > multipart/alternative > text/plain + text/html, UTF-8, 8bit) and the same headers
  (RFC 2047 encoded words), without the ``email`` package's generator, which cost ~0.9 ms per message;
- the SMTP connection is kept per thread (:class:`_Relay`) for at most :data:`MAX_AGE` seconds and
  :data:`MAX_MESSAGES` messages instead of connect, EHLO, [STARTTLS, EHLO, AUTH] and QUIT per message. A
  relay that dropped the idle connection is noticed at the first command of the next message (nothing was
  accepted yet): the message is then sent once more on a fresh connection. Any other failure closes the
  connection and raises :class:`MailNotSent` (never a second copy of a message the relay may have taken).
"""

from __future__ import annotations

import functools
import logging
import random
import smtplib
import ssl
import threading
import time
from dataclasses import dataclass
from email.header import Header
from email.utils import formataddr, formatdate, make_msgid, parseaddr
from typing import TYPE_CHECKING

from flask import current_app, render_template
from jinja2 import TemplateNotFound

from idp import metrics
from idp.errors import ServiceUnavailable
from idp.extensions import settings

if TYPE_CHECKING:
    from flask_mail import Mail

log = logging.getLogger(__name__)

MAX_AGE = 60.0  # seconds a connection is reused (relays close idle ones after 60-300 s)
MAX_MESSAGES = 100  # messages per connection before it is renewed


class MailNotSent(ServiceUnavailable):
    """The SMTP relay refused or did not answer; the caller decides what this means (e.g. no quota use)."""

    code = "mail_not_sent"
    title = "Envoi impossible"
    description = ("Le code n'a pas pu être envoyé par e-mail. Le service de messagerie est momentanément "
                   "indisponible : merci de réessayer dans quelques minutes.")


# --- the message ---------------------------------------------------------------------------------
class BadHeader(ValueError):
    """A header value with a line break (header injection)."""


@functools.lru_cache(maxsize=64)
def _encoded(text: str) -> str:
    """``text`` as a header value: itself when ASCII, else RFC 2047 encoded words (as Flask-Mail writes it)."""
    if "\r" in text or "\n" in text:
        raise BadHeader("line break in a header")
    try:
        text.encode("ascii")
    except UnicodeEncodeError:
        return Header(text, "utf-8").encode(linesep="\r\n")
    return text


@functools.lru_cache(maxsize=1024)
def _address(value: str) -> str:
    """``Name <addr>`` with the name encoded (RFC 2047) and an IDN domain in punycode; the envelope uses
    :func:`_bare`."""
    if "\r" in value or "\n" in value:
        raise BadHeader("line break in an address")
    name, addr = parseaddr(value)
    if not name:
        return _ascii_addr(addr)
    return formataddr((Header(name, "utf-8").encode(linesep="\r\n"), _ascii_addr(addr)))


def _ascii_addr(addr: str) -> str:
    try:
        addr.encode("ascii")
    except UnicodeEncodeError:
        local, _, domain = addr.rpartition("@")
        return f"{local}@{domain.encode('idna').decode('ascii')}" if local else addr
    return addr


def _bare(value: str) -> str:
    """The address alone (SMTP envelope)."""
    return _ascii_addr(parseaddr(value)[1])


def _boundary() -> str:
    return "===============" + str(random.randrange(10**18, 10**19)) + "=="  # noqa: S311 - not a secret (as email.generator)


def _crlf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")


def _part_head(subtype: str, text: str) -> str:
    encoding = "7bit" if text.isascii() else "8bit"
    return f'Content-Type: text/{subtype}; charset="utf-8"\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: {encoding}\r\n'


def wire_message(*, sender: str, to: str, subject: str, text: str, html: str | None,
                 date: float | None = None) -> bytes:
    """The message as sent (CRLF line ends): the headers and MIME parts Flask-Mail's ``Message`` writes
    (a text/plain message alone, or mixed > alternative > plain + html)."""
    addressing = (f"Subject: {_encoded(subject)}\r\nFrom: {_address(sender)}\r\nTo: {_address(to)}\r\n"
                  f"Date: {formatdate(date, localtime=True)}\r\nMessage-ID: {_msgid()}\r\n\r\n")
    if html is None:
        return (_part_head("plain", text) + addressing + _crlf(text)).encode()
    outer, inner = _boundary(), _boundary()
    body = "".join(f"--{inner}\r\n{_part_head(subtype, part)}\r\n{_crlf(part)}\r\n"
                   for subtype, part in (("plain", text), ("html", html)))
    return (f'Content-Type: multipart/mixed; boundary="{outer}"\r\nMIME-Version: 1.0\r\n{addressing}'
            f'--{outer}\r\nContent-Type: multipart/alternative; boundary="{inner}"\r\nMIME-Version: 1.0\r\n\r\n'
            f"{body}--{inner}--\r\n\r\n--{outer}--\r\n").encode()


@functools.cache
def _domain() -> str:
    import socket

    return socket.getfqdn()


def _msgid() -> str:
    return make_msgid(domain=_domain())


# --- the connection ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Target:
    """What a connection was opened for: a change (tests, reconfiguration) opens a new one."""

    server: str
    port: int
    use_ssl: bool
    use_tls: bool
    username: str | None
    password: str | None
    timeout: float
    ca_file: str | None = None


def _tls(target: _Target) -> ssl.SSLContext:
    """TLS to the relay verifies its certificate and host name (smtplib's own default context does neither:
    a man in the middle would read every security code and reset link)."""
    return ssl.create_default_context(cafile=target.ca_file or None)


class _Stale(Exception):
    """A reused connection failed before the relay accepted anything: send again on a fresh one."""


class _Relay:
    """One open SMTP connection (owned by one thread)."""

    def __init__(self, target: _Target) -> None:
        self.target = target
        host: smtplib.SMTP
        if target.use_ssl:
            host = smtplib.SMTP_SSL(target.server, target.port, timeout=target.timeout, context=_tls(target))
        else:
            host = smtplib.SMTP(target.server, target.port, timeout=target.timeout)
        try:
            if target.use_tls:
                host.starttls(context=_tls(target))
            if target.username and target.password:
                host.login(target.username, target.password)
            host.ehlo_or_helo_if_needed()
        except BaseException:
            host.close()
            raise
        self.host = host
        self.opened = time.monotonic()
        self.sent = 0

    def usable_for(self, target: _Target) -> bool:
        return (self.target == target and self.sent < MAX_MESSAGES
                and time.monotonic() - self.opened < MAX_AGE)

    def send(self, sender: str, recipients: list[str], data: bytes, *, reused: bool) -> None:
        """MAIL, RCPT, DATA (as ``smtplib.SMTP.sendmail``); a reused connection found closed at MAIL is
        :class:`_Stale`."""
        try:
            code, answer = self.host.mail(sender)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            if reused:
                raise _Stale from exc
            raise
        if code == 421 and reused:  # the relay is closing this (idle) connection
            raise _Stale
        if code != 250:
            raise smtplib.SMTPSenderRefused(code, answer, sender)
        refused: dict[str, tuple[int, bytes]] = {}
        for recipient in recipients:
            code, answer = self.host.rcpt(recipient)
            if code not in (250, 251):
                refused[recipient] = (code, answer)
        if len(refused) == len(recipients):
            raise smtplib.SMTPRecipientsRefused(refused)
        code, answer = self.host.data(data)
        if code != 250:
            raise smtplib.SMTPDataError(code, answer)
        self.sent += 1

    def close(self, *, polite: bool = True) -> None:
        try:
            if polite:
                self.host.quit()
            else:
                self.host.close()
        except (smtplib.SMTPException, OSError):
            self.host.close()


_local = threading.local()


def _target(mail: Mail) -> _Target:
    configured = settings()
    return _Target(mail.server, int(mail.port), bool(mail.use_ssl), bool(mail.use_tls), mail.username or None,
                   mail.password or None, configured.smtp_timeout, configured.smtp_ca_file or None)


def _deliver(target: _Target, sender: str, recipients: list[str], data: bytes) -> None:
    """Send on this thread's connection (opened or renewed as needed); one more try on a fresh connection
    when the kept one turned out closed before the relay took anything."""
    relay: _Relay | None = getattr(_local, "relay", None)
    if relay is not None and not relay.usable_for(target):
        _local.relay = None
        relay.close()
        relay = None
    for reused in ((True, False) if relay is not None else (False,)):
        if relay is None:
            relay = _Relay(target)
        _local.relay = relay
        try:
            relay.send(sender, recipients, data, reused=reused)
            return
        except _Stale:
            _local.relay = None
            relay.close(polite=False)
            relay = None
        except BaseException:
            _local.relay = None
            relay.close(polite=False)
            raise
    raise AssertionError("unreachable: a fresh connection is never stale")  # pragma: no cover


def close_connection() -> None:
    """Close this thread's kept connection, if any (tests, shutdown)."""
    relay: _Relay | None = getattr(_local, "relay", None)
    _local.relay = None
    if relay is not None:
        relay.close()


def send_mail(to: str, subject: str, template: str, **context: object) -> None:
    """Render ``mail/<template>.txt`` (and ``.html`` when present) and send it; raise :class:`MailNotSent`."""
    text = render_template(f"mail/{template}.txt", **context)
    try:
        html: str | None = render_template(f"mail/{template}.html", **context)
    except TemplateNotFound:  # the HTML part is optional
        html = None
    mail: Mail = current_app.extensions["mail"]
    configured = mail.default_sender
    sender = formataddr(configured) if isinstance(configured, tuple) else str(configured)
    data = wire_message(sender=sender, to=to, subject=subject, text=text, html=html)
    if mail.suppress:
        return
    try:
        _deliver(_target(mail), _bare(sender), [_bare(to)], data)
    except (TimeoutError, smtplib.SMTPException, OSError) as exc:
        log.warning("mail not sent", extra={"template": template, "error": type(exc).__name__})
        metrics.mail_failed()
        raise MailNotSent(detail=type(exc).__name__) from exc
    log.info("mail sent", extra={"template": template})
