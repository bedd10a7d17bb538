"""SMTP relay down or slow: the page says the code could not be sent, and the request costs no quota.

The relay is reached through a TCP proxy in front of the test's aiosmtpd server, so that a test can
cut it ("down": connection refused) or replace it by a socket that never answers ("slow": the SMTP
timeout, 1 s here, expires). A slow relay that delivers late is a server of its own (aiosmtpd whose
handler sleeps past the timeout).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import csrf_from, free_port, remember_secret
from tests.login.conftest import EMAIL, bind, make_account, new_interaction, post_identify
from tests.resilience.conftest import text_of
from tests.resilience.harness import TcpProxy

NOT_SENT = "Le code n'a pas pu être envoyé par e-mail"
QUOTA = "Le nombre maximum de demandes de code a été atteint"


@pytest.fixture
def relay(mailbox: Any) -> Iterator[TcpProxy]:
    """A cuttable path to the real SMTP sink."""
    proxy = TcpProxy(mailbox.host, mailbox.port).start()
    yield proxy
    proxy.cut()


@pytest.fixture
def silent_smtp() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word (a stalled relay)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield listener.getsockname()[1]
    listener.close()


def _resend(client: Any) -> Any:
    return client.post("/connexion/code/nouveau", data={"csrf_token": csrf_from(client.get("/connexion/code").data)})


def _sent_to(mailbox: Any) -> int:
    return sum(EMAIL in m["to"] for m in mailbox.messages)


@pytest.mark.parametrize("fault", ["down", "slow"])
def test_code_not_sent_is_said_and_does_not_count_toward_the_quota(make_app: Any, relay: TcpProxy, silent_smtp: int,
                                                                   mailbox: Any, fault: str) -> None:
    """The relay is down (refused) or slow (never answers) at the password step and for 6 more requests.

    Expected: the code page says "Le code n'a pas pu être envoyé par e-mail" (never "va vous être
    envoyé"), each "Recevoir un nouveau code" says it again with a 200 page (no 5xx), none of these
    requests counts: once the relay is back, the full quota of 5 codes is still available and only
    the 6th request is refused with the quota message."""
    port = relay.port if fault == "down" else silent_smtp
    if fault == "down":
        relay.cut()
    app = make_app(smtp_port=port, smtp_timeout=1.0)
    make_account(app)
    client = app.test_client()
    bind(client, new_interaction(app))
    assert post_identify(client).headers["Location"].endswith("/connexion/code")
    page = text_of(client.get("/connexion/code"))
    assert NOT_SENT in page and "va vous être envoyé" not in page
    for _ in range(6):
        answer = _resend(client)
        assert answer.status_code == 200 and NOT_SENT in text_of(answer)
    assert _sent_to(mailbox) == 0
    with app.app_context():  # the relay is back (same address for "down", the real sink for "slow")
        app.extensions["mail"].port = relay.start().port if fault == "down" else mailbox.port
    for n in range(1, 6):
        assert _resend(client).status_code == 303, f"code {n} of the quota refused"
        assert _sent_to(mailbox) == n
    assert QUOTA in text_of(_resend(client))


def test_a_code_delivered_after_the_timeout_is_worthless(make_app: Any, mailbox: Any) -> None:
    """A relay that accepts the message only after the SMTP timeout (it arrives, but late).

    Expected: the page says the code could not be sent; the code that reaches the mailbox later is
    refused ("Aucun code de sécurité n'est en attente"): a code the IdP gave up on never opens a session."""
    from aiosmtpd.controller import Controller

    from idp.dev.mailbox import parse_message

    late: list[dict[str, str]] = []

    class SlowHandler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            # The relay has the whole message (and will deliver it) but acknowledges after the timeout.
            late.append(parse_message(envelope.original_content or envelope.content))
            await asyncio.sleep(2.0)
            return "250 OK"

    controller = Controller(SlowHandler(), hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        app = make_app(smtp_port=controller.port, smtp_timeout=1.0)
        make_account(app)
        client = app.test_client()
        bind(client, new_interaction(app))
        post_identify(client)
        assert NOT_SENT in text_of(client.get("/connexion/code"))
        import time

        deadline = time.monotonic() + 5
        while not late and time.monotonic() < deadline:
            time.sleep(0.1)
        assert late, "the slow relay never delivered"
        import re

        code = re.search(r"\b(\d{6})\b", late[0]["body"]).group(1)  # type: ignore[union-attr]
        remember_secret(code)
        token = csrf_from(client.get("/connexion/code").data)
        answer = client.post("/connexion/code", data={"csrf_token": token, "code": code})
        assert answer.status_code == 200
        assert "Aucun code de sécurité n'est en attente" in text_of(answer)
    finally:
        controller.stop()
