"""E-mail through Flask-Mail over SMTP, French templates, UTF-8 throughout."""

from __future__ import annotations

import logging
import smtplib

from flask import render_template
from flask_mail import Message
from jinja2 import TemplateNotFound

from idp.errors import ServiceUnavailable
from idp.extensions import mail

log = logging.getLogger(__name__)


class MailNotSent(ServiceUnavailable):
    """The SMTP relay refused or did not answer; the caller decides what this means (e.g. no quota use)."""

    code = "mail_not_sent"
    title = "Envoi impossible"
    description = ("Le code n'a pas pu être envoyé par e-mail. Le service de messagerie est momentanément "
                   "indisponible : merci de réessayer dans quelques minutes.")


def send_mail(to: str, subject: str, template: str, **context: object) -> None:
    """Render ``mail/<template>.txt`` (and ``.html`` when present) and send it; raise :class:`MailNotSent`."""
    message = Message(subject=subject, recipients=[to], charset="utf-8")
    message.body = render_template(f"mail/{template}.txt", **context)
    try:
        message.html = render_template(f"mail/{template}.html", **context)
    except TemplateNotFound:  # the HTML part is optional
        message.html = None
    try:
        mail.send(message)
    except (TimeoutError, smtplib.SMTPException, OSError) as exc:
        log.warning("mail not sent", extra={"template": template, "error": type(exc).__name__})
        raise MailNotSent(detail=type(exc).__name__) from exc
    log.info("mail sent", extra={"template": template})
