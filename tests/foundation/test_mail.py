"""E-mails leave through real SMTP and arrive in French, UTF-8 intact."""

from __future__ import annotations

import pytest

from idp.notify.mail import MailNotSent, send_mail


def test_an_email_arrives_at_the_smtp_server_with_french_subject_and_body(app, mailbox):
    with app.app_context():
        send_mail("assuree@example.fr", "Votre code de sécurité — « essai » à 14h45", "test", name="Élodie Ñúñez")
    message = mailbox.last("assuree@example.fr")
    assert message["subject"] == "Votre code de sécurité — « essai » à 14h45"
    assert "Bonjour Élodie Ñúñez," in message["body"]
    assert "« é à ç ù œ »" in message["body"] and "€" in message["body"]
    assert b"charset=\"utf-8\"" in mailbox.raw[-1].lower() or b"charset=utf-8" in mailbox.raw[-1].lower()


def test_an_unreachable_smtp_server_is_reported_as_mail_not_sent(clock, tmp_path):
    from idp import create_app
    from tests.conftest import base_config, free_port

    app = create_app(base_config(clock, None, database_url=f"sqlite:///{tmp_path}/m.db", redis_url="memory://",
                                 smtp_port=free_port()))
    with app.app_context(), pytest.raises(MailNotSent) as caught:
        send_mail("assure@example.fr", "Essai", "test", name="X")
    assert caught.value.status == 503
    assert "n'a pas pu être envoyé" in caught.value.description


def test_a_stalled_smtp_server_times_out_instead_of_hanging(clock, tmp_path):
    """A relay that accepts the connection but never answers is given up after smtp_timeout."""
    import socket
    import time

    from idp import create_app
    from tests.conftest import base_config

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    app = create_app(base_config(clock, None, database_url=f"sqlite:///{tmp_path}/m.db", redis_url="memory://",
                                 smtp_port=silent.getsockname()[1], smtp_timeout=0.5))
    started = time.monotonic()
    with app.app_context(), pytest.raises(MailNotSent):
        send_mail("assure@example.fr", "Essai", "test", name="X")
    assert time.monotonic() - started < 5
    silent.close()
