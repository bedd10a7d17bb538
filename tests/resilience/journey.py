"""One person's whole journey over HTTP against a running IdP, timed, for the multi-worker test.

authorize -> /connexion (NIR + password) -> security code read from the real SMTP sink (after one
wrong code) -> the RP answered -> token exchange -> three refresh rotations -> the rotated token is
refused and its family revoked. Every answer's status and duration is recorded.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from tests.conftest import csrf_from

WRONG = "Les informations saisies sont erronées"


@dataclass
class Recorder:
    """Status codes and durations of every request a journey made."""

    timings: list[tuple[str, int, float]] = field(default_factory=list)  # (step, status, seconds)

    def call(self, step: str, method: Callable[..., requests.Response], *args: Any, **kwargs: Any) -> requests.Response:
        """Make a request (redirects never followed) and record it."""
        kwargs.setdefault("allow_redirects", False)
        kwargs.setdefault("timeout", 60)
        started = time.monotonic()
        answer = method(*args, **kwargs)
        self.timings.append((step, answer.status_code, time.monotonic() - started))
        return answer


@dataclass
class JourneyResult:
    """What a journey proved, for the test's assertions and figures."""

    refresh_tokens: list[str]
    replay_status: int
    replay_error: str
    after_replay_error: str
    recorder: Recorder


def _query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def run_journey(url: str, *, nir: str, password: str, wait_code: Callable[[], str], params: dict[str, str],
                verifier: str, client_id: str, client_secret: str, address: str, rotations: int = 3,
                replay: bool = True) -> JourneyResult:
    """Walk the whole journey as one browser (own cookie jar, own X-Forwarded-For) plus its RP.

    ``rotations`` refreshes follow the token exchange; with ``replay`` the 2nd token of the chain is
    presented again and then the last one (both must be refused)."""
    rec = Recorder()
    browser = requests.Session()
    browser.headers["X-Forwarded-For"] = address
    started = rec.call("authorize", browser.get, url + "/authorize", params=params)
    assert started.status_code == 303 and started.headers["Location"].endswith("/connexion"), started.text[:200]
    page = rec.call("login page", browser.get, url + "/connexion")
    assert page.status_code == 200, (page.status_code, re.sub(r"\s+", " ", html.unescape(page.text))[-1500:])
    answer = rec.call("identify", browser.post, url + "/connexion",
                      data={"csrf_token": csrf_from(page.text), "nir": nir, "password": password})
    assert answer.status_code == 303 and answer.headers["Location"].endswith("/connexion/code"), answer.text[:300]
    code = wait_code()
    token = csrf_from(rec.call("code page", browser.get, url + "/connexion/code").text)
    wrong = "000000" if code != "000000" else "111111"
    first = rec.call("wrong code", browser.post, url + "/connexion/code", data={"csrf_token": token, "code": wrong})
    assert first.status_code == 200 and WRONG in html.unescape(first.text), first.text[:300]
    right = rec.call("right code", browser.post, url + "/connexion/code", data={"csrf_token": token, "code": code})
    assert right.status_code == 303, right.text[:300]
    if right.headers["Location"].endswith("/biometrie/proposition"):  # from the 2nd login on: "Plus tard"
        offer = rec.call("offer page", browser.get, url + "/biometrie/proposition")
        right = rec.call("offer later", browser.post, url + "/biometrie/proposition",
                         data={"csrf_token": csrf_from(offer.text), "choice": "later"})
        assert right.status_code == 303, right.text[:300]
        if right.headers["Location"].endswith("/connexion/suite"):  # login.next decides: done
            right = rec.call("next step", browser.get, url + "/connexion/suite")
    # The login's last step answers the RP at once (303 to its callback, with the code).
    assert right.status_code == 303 and right.headers["Location"].startswith(params["redirect_uri"] + "?"), \
        right.headers["Location"]
    reply = _query(right.headers["Location"])
    assert reply["state"] == params["state"] and reply["iss"] == url

    rp = requests.Session()
    rp.auth = (client_id, client_secret)
    tokens = rec.call("token", rp.post, url + "/token", data={
        "grant_type": "authorization_code", "code": reply["code"], "redirect_uri": params["redirect_uri"],
        "code_verifier": verifier})
    assert tokens.status_code == 200, tokens.text[:300]
    chain = [tokens.json()["refresh_token"]]
    for _ in range(rotations):
        rotated = rec.call("refresh", rp.post, url + "/token",
                           data={"grant_type": "refresh_token", "refresh_token": chain[-1]})
        assert rotated.status_code == 200, rotated.text[:300]
        chain.append(rotated.json()["refresh_token"])
    if not replay:
        return JourneyResult(chain, 0, "", "", rec)
    replay = rec.call("replay", rp.post, url + "/token", data={"grant_type": "refresh_token", "refresh_token": chain[1]})
    after = rec.call("after replay", rp.post, url + "/token",
                     data={"grant_type": "refresh_token", "refresh_token": chain[-1]})
    return JourneyResult(chain, replay.status_code, replay.json().get("error", ""), after.json().get("error", ""), rec)


def wait_for_code(mailbox: Any, to: str, *, timeout: float = 20) -> str:
    """The 6-digit code of the newest e-mail to ``to`` in the real SMTP sink (bounded wait)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [m for m in list(mailbox.messages) if to in m["to"]]
        if found:
            match = re.search(r"\b(\d{6})\b", found[-1]["body"])
            assert match, "no code in the e-mail"
            from tests.conftest import remember_secret

            remember_secret(match.group(1))
            return match.group(1)
        time.sleep(0.05)
    raise AssertionError(f"no e-mail for {to} within {timeout}s")
