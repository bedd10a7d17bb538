"""SMS gateway port and its adapters (development mailbox, HTTP gateway)."""

from __future__ import annotations

import logging
from typing import Protocol

import requests
from urllib3.exceptions import NewConnectionError

from idp.errors import ServiceUnavailable

log = logging.getLogger(__name__)


class SmsNotSent(ServiceUnavailable):
    """The gateway refused or did not answer. ``maybe_sent``: the request reached the gateway and its answer
    was lost or an error (a read timeout, a 5xx), so the text may have been delivered all the same: a quota
    unit paid for it is kept."""

    code = "sms_not_sent"
    maybe_sent = False
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
            failure = SmsNotSent(detail=type(exc).__name__)
            # Never reached the gateway (refused, connect timeout) or refused by it (4xx): nothing went out.
            reason = getattr(exc.args[0], "reason", None) if exc.args else None
            unreached = isinstance(exc, requests.ConnectTimeout) or isinstance(reason, NewConnectionError)
            refused = isinstance(exc, requests.HTTPError) and exc.response is not None \
                and 400 <= exc.response.status_code < 500
            failure.maybe_sent = not (unreached or refused)
            raise failure from exc
