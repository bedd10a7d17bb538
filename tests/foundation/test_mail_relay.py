"""The SMTP connection is kept between e-mails (per thread, bounded), and what goes on the wire is intact.

Every test talks to a real aiosmtpd server of its own, whose handler counts the connections (one
ephemeral client port per connection) and can refuse or close idle connections like a real relay.
"""

from __future__ import annotations

import email
import email.policy
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from idp import metrics
from idp.notify import mail
from idp.notify.mail import MailNotSent, send_mail
from tests.conftest import base_config, free_port


@dataclass
class Relay:
    """An aiosmtpd relay: what it received, over how many connections; ``refuse`` answers 550 to RCPT."""

    port: int
    raw: list[bytes] = field(default_factory=list)
    peers: set[tuple[str, int]] = field(default_factory=set)
    rcpt_seen: int = 0
    refuse: bool = False


def _start(timeout: float = 300.0) -> tuple[Relay, Any]:
    from aiosmtpd.controller import Controller

    relay = Relay(free_port())

    class Handler:
        async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
            relay.rcpt_seen += 1
            if relay.refuse:
                return "550 5.1.1 Mailbox unavailable"
            envelope.rcpt_tos.append(address)
            return "250 OK"

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            relay.raw.append(envelope.original_content or envelope.content)
            relay.peers.add(tuple(session.peer[:2]))
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=relay.port, timeout=timeout)
    controller.start()
    return relay, controller


@pytest.fixture
def relay() -> Iterator[Relay]:
    found, controller = _start()
    yield found
    mail.close_connection()
    controller.stop()


@pytest.fixture
def idle_closing_relay() -> Iterator[Relay]:
    """A relay that closes a connection idle for 0.3 s (as Postfix does after smtpd_timeout)."""
    found, controller = _start(timeout=0.3)
    yield found
    mail.close_connection()
    controller.stop()


def _app(clock: Any, tmp_path: Any, port: int) -> Any:
    from idp import create_app

    return create_app(base_config(clock, None, database_url=f"sqlite:///{tmp_path}/m.db", redis_url="memory://",
                                  smtp_port=port))


def _failures() -> float:
    return metrics.MAIL_FAILURES._value.get()


def _send(app: Any, to: str = "assuree@example.fr") -> None:
    with app.app_context():
        send_mail(to, "Votre code de sécurité — « essai »", "security_code", code="123456", minutes=15,
                  expires="14 h 45")


def test_the_security_code_email_on_the_wire_parses_back_with_subject_addresses_and_both_utf8_parts(
        clock: Any, tmp_path: Any, relay: Relay) -> None:
    _send(_app(clock, tmp_path, relay.port), to="Élodie Ñúñez <elodie@example.fr>")
    sent = email.message_from_bytes(relay.raw[-1], policy=email.policy.default)
    assert sent["Subject"] == "Votre code de sécurité — « essai »"
    assert sent["From"].addresses[0].addr_spec == "ne-pas-repondre@ameli.local"
    assert sent["To"].addresses[0].display_name == "Élodie Ñúñez"
    assert sent["To"].addresses[0].addr_spec == "elodie@example.fr"
    assert sent["Message-ID"] and sent["Date"]
    assert sent.get_content_type() == "multipart/mixed"
    text, html = sent.get_body(("plain",)), sent.get_body(("html",))
    assert text is not None and html is not None
    assert text.get_content_charset() == "utf-8" and html.get_content_charset() == "utf-8"
    assert "123456" in text.get_content() and "123456" in html.get_content()
    assert "sécurité" in text.get_content()
    assert b"\r\n" in relay.raw[-1] and b"\n" not in relay.raw[-1].replace(b"\r\n", b"")


def test_a_text_only_email_is_one_text_part() -> None:
    raw = mail.wire_message(sender="Mon compte ameli <ne-pas-repondre@ameli.local>", to="a@example.fr",
                            subject="Adresse modifiée", text="Bonjour,\nvotre adresse a changé.\n", html=None)
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed.get_content_type() == "text/plain" and parsed["Subject"] == "Adresse modifiée"
    assert parsed.get_content().replace("\r\n", "\n") == "Bonjour,\nvotre adresse a changé.\n"


def test_a_header_with_a_line_break_is_refused() -> None:
    with pytest.raises(mail.BadHeader):
        mail.wire_message(sender="x@example.fr", to="a@example.fr\r\nBcc: b@example.fr", subject="s", text="t",
                          html=None)


def test_successive_emails_share_one_smtp_connection(clock: Any, tmp_path: Any, relay: Relay) -> None:
    app = _app(clock, tmp_path, relay.port)
    for _ in range(3):
        _send(app)
    assert len(relay.raw) == 3
    assert len(relay.peers) == 1


def test_the_kept_connection_is_renewed_after_max_messages(clock: Any, tmp_path: Any, relay: Relay,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mail, "MAX_MESSAGES", 2)
    app = _app(clock, tmp_path, relay.port)
    for _ in range(5):
        _send(app)
    assert len(relay.raw) == 5 and len(relay.peers) == 3


def test_the_kept_connection_is_renewed_after_max_age(clock: Any, tmp_path: Any, relay: Relay,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    app = _app(clock, tmp_path, relay.port)
    _send(app)
    monkeypatch.setattr(mail, "MAX_AGE", 0.0)
    _send(app)
    assert len(relay.raw) == 2 and len(relay.peers) == 2


def test_the_relay_closed_the_idle_connection_the_email_is_sent_once_on_a_new_one(
        clock: Any, tmp_path: Any, idle_closing_relay: Relay) -> None:
    app = _app(clock, tmp_path, idle_closing_relay.port)
    failures = _failures()
    _send(app)
    time.sleep(0.8)  # the relay closes the idle connection
    _send(app)
    assert len(idle_closing_relay.raw) == 2, "each e-mail delivered exactly once"
    assert len(idle_closing_relay.peers) == 2
    assert _failures() == failures


def test_the_relay_refuses_mail_not_sent_counted_once_and_not_sent_again(clock: Any, tmp_path: Any,
                                                                       relay: Relay) -> None:
    app = _app(clock, tmp_path, relay.port)
    _send(app)  # a kept connection exists: the refusal must not be taken for a stale one
    relay.refuse = True
    failures, seen = _failures(), relay.rcpt_seen
    with pytest.raises(MailNotSent):
        _send(app)
    assert _failures() == failures + 1
    assert relay.rcpt_seen == seen + 1, "a refused e-mail is not tried again"
    relay.refuse = False
    _send(app)  # the next e-mail goes through (on a fresh connection)
    assert len(relay.raw) == 2


def test_the_relay_gone_for_good_is_mail_not_sent_counted_once(clock: Any, tmp_path: Any) -> None:
    found, controller = _start()
    app = _app(clock, tmp_path, found.port)
    _send(app)
    controller.stop()  # the kept connection dies with the relay, and nothing listens any more
    failures = _failures()
    with pytest.raises(MailNotSent):
        _send(app)
    assert _failures() == failures + 1
    mail.close_connection()


def test_a_changed_relay_address_opens_a_connection_to_the_new_one(clock: Any, tmp_path: Any, relay: Relay) -> None:
    other, controller = _start()
    try:
        app = _app(clock, tmp_path, relay.port)
        _send(app)
        app.extensions["mail"].port = other.port
        _send(app)
        assert len(relay.raw) == 1 and len(other.raw) == 1
    finally:
        mail.close_connection()
        controller.stop()
