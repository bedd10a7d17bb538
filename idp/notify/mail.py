"""E-mail through Flask-Mail over SMTP, French templates, UTF-8 throughout."""

from __future__ import annotations

import logging
import smtplib
from email import policy

from flask import current_app, render_template
from flask_mail import Connection, Message
from jinja2 import TemplateNotFound

from idp import metrics
from idp.errors import ServiceUnavailable
from idp.extensions import settings

log = logging.getLogger(__name__)


class MailNotSent(ServiceUnavailable):
    """The SMTP relay refused or did not answer; the caller decides what this means (e.g. no quota use)."""

    code = "mail_not_sent"
    title = "Envoi impossible"
    description = ("Le code n'a pas pu être envoyé par e-mail. Le service de messagerie est momentanément "
                   "indisponible : merci de réessayer dans quelques minutes.")


# Headers are built by Flask-Mail (encoded words, sanitised addresses); the wire form needs only
# CRLF line ends. policy.SMTP re-parses every header through the header registry on the way out
# (~2 ms of CPU per security-code e-mail, the largest cost of a login after the hash); compat32
# writes the same MIME parts and headers as they are (parsed back: same subject, addresses and parts).
_WIRE = policy.compat32.clone(linesep="\r\n", max_line_length=998)  # RFC 5322 §2.1.1 limit


class _Message(Message):
    """Flask-Mail's message, written out with :data:`_WIRE`."""

    def as_bytes(self) -> bytes:
        """The message as sent (CRLF line ends)."""
        built = self._message()
        built.policy = _WIRE
        return built.as_bytes()


class _TimeoutConnection(Connection):
    """Flask-Mail's connection opens SMTP without a timeout; a stalled relay would hang the worker."""

    def configure_host(self) -> smtplib.SMTP | smtplib.SMTP_SSL:
        timeout = settings().smtp_timeout
        host: smtplib.SMTP | smtplib.SMTP_SSL
        if self.mail.use_ssl:
            host = smtplib.SMTP_SSL(self.mail.server, self.mail.port, timeout=timeout)
        else:
            host = smtplib.SMTP(self.mail.server, self.mail.port, timeout=timeout)
        if self.mail.use_tls:
            host.starttls()
        if self.mail.username and self.mail.password:
            host.login(self.mail.username, self.mail.password)
        return host


def send_mail(to: str, subject: str, template: str, **context: object) -> None:
    """Render ``mail/<template>.txt`` (and ``.html`` when present) and send it; raise :class:`MailNotSent`."""
    message = _Message(subject=subject, recipients=[to], charset="utf-8")
    message.body = render_template(f"mail/{template}.txt", **context)
    try:
        message.html = render_template(f"mail/{template}.html", **context)
    except TemplateNotFound:  # the HTML part is optional
        message.html = None
    try:
        with _TimeoutConnection(current_app.extensions["mail"]) as connection:
            connection.send(message)
    except (TimeoutError, smtplib.SMTPException, OSError) as exc:
        log.warning("mail not sent", extra={"template": template, "error": type(exc).__name__})
        metrics.mail_failed()
        raise MailNotSent(detail=type(exc).__name__) from exc
    log.info("mail sent", extra={"template": template})
