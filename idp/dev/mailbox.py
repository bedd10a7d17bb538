"""Development mailbox: an in-process SMTP sink (aiosmtpd) and a store the mailbox page reads.

Development only: ``create_app`` never registers it in production.
"""

from __future__ import annotations

import email
import email.policy
import json
import threading
from datetime import UTC, datetime
from typing import Any

import redis
from flask import current_app

from idp.extensions import rkey


class DevMailbox:
    """Messages kept in a Redis list (so every worker of a dev server sees the same mailbox)."""

    LIMIT = 200

    def __init__(self, client: redis.Redis, key: str) -> None:
        self.client = client
        self.key = key

    @classmethod
    def current(cls) -> DevMailbox:
        """The mailbox of the current application."""
        return cls(current_app.extensions["idp.redis"], rkey("devmailbox"))

    def add(self, *, kind: str, to: str, subject: str, body: str) -> None:
        """Store one message (newest first)."""
        item = {"kind": kind, "to": to, "subject": subject, "body": body,
                "at": datetime.now(UTC).isoformat(timespec="seconds")}
        pipe = self.client.pipeline()
        pipe.lpush(self.key, json.dumps(item, ensure_ascii=False))
        pipe.ltrim(self.key, 0, self.LIMIT - 1)
        pipe.execute()

    def messages(self) -> list[dict[str, Any]]:
        """Newest first."""
        return [json.loads(raw) for raw in self.client.lrange(self.key, 0, self.LIMIT - 1)]


class DevSmsGateway:
    """Development only (``sms_backend = "dev"``): an SMS is shown in the development mailbox page."""

    def send(self, phone: str, text: str) -> None:
        """Store the message in the development mailbox."""
        DevMailbox.current().add(kind="sms", to=phone, subject="SMS", body=text)


def parse_message(raw: bytes) -> dict[str, str]:
    """Decode an RFC 5322 message into to/subject/text body (UTF-8 safe)."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    body_part = msg.get_body(preferencelist=("plain", "html"))
    body = body_part.get_content() if body_part is not None else ""
    return {"to": str(msg.get("To", "")), "subject": str(msg.get("Subject", "")), "body": body}


class _SinkHandler:
    def __init__(self, mailbox: DevMailbox) -> None:
        self.mailbox = mailbox

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = parse_message(envelope.original_content or envelope.content)
        self.mailbox.add(kind="email", **parsed)
        return "250 Message accepted for delivery"


_sink_lock = threading.Lock()


def start_smtp_sink(mailbox: DevMailbox, host: str, port: int) -> Any:
    """Start an aiosmtpd controller in a background thread; returns it (call ``stop()`` to end)."""
    from aiosmtpd.controller import Controller

    with _sink_lock:
        controller = Controller(_SinkHandler(mailbox), hostname=host, port=port)
        controller.start()
        return controller
