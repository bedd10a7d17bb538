"""SMS gateway port and its adapters (development mailbox, HTTP gateway)."""

from __future__ import annotations

import logging
from typing import Protocol

import requests

from idp.errors import ServiceUnavailable

log = logging.getLogger(__name__)


class SmsNotSent(ServiceUnavailable):
    """The gateway refused or did not answer."""

    code = "sms_not_sent"
    title = "Envoi impossible"
    description = "Le SMS n'a pas pu être envoyé. Merci de réessayer dans quelques minutes."


class SmsGateway(Protocol):
    """Sends a text message to an E.164 number."""

    def send(self, phone: str, text: str) -> None:
        """Send ``text`` to ``phone``; raise :class:`SmsNotSent` on failure."""
        ...


class HttpSmsGateway:
    """POSTs ``{"to": ..., "text": ...}`` as JSON to a gateway URL."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url
        self.timeout = timeout

    def send(self, phone: str, text: str) -> None:
        """Deliver through the gateway; any non-2xx answer or network error raises SmsNotSent."""
        try:
            response = requests.post(self.url, json={"to": phone, "text": text}, timeout=self.timeout)
            response.raise_for_status()
        except requests.RequestException as exc:
            log.warning("sms not sent", extra={"error": type(exc).__name__})
            raise SmsNotSent(detail=type(exc).__name__) from exc
