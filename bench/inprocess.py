"""The hot requests run in this process through Flask's test client, under pyinstrument.

No HTTP server and no concurrency: the profile shows what one request costs inside the
application (Authlib, JOSE signing, SQL, Redis, templates, argon2id), which is what a fix can change.
The same database, Redis prefix and SMTP sink as the servers are used.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from bench import flows, measure
from bench.client import basic_auth
from bench.infra import SmtpSink
from bench.seed import Seeded


class _Browser:
    """A test client with the bench RP's helpers."""

    def __init__(self, app: Any, seeded: Seeded) -> None:
        self.app, self.seeded = app, seeded
        self.auth = basic_auth(seeded.client_id, seeded.client_secret)
        self.target = flows.Target("idp", "http://localhost", seeded.client_id, seeded.client_secret)

    def client(self, **cookies: str) -> Any:
        made = self.app.test_client()
        for name, value in cookies.items():
            made.set_cookie(name, value, domain="localhost")
        return made

    def token(self, client: Any, form: dict[str, str]) -> dict[str, Any]:
        answer = client.post("/token", data=form, headers=self.auth)
        if answer.status_code != 200:
            raise flows.Unexpected(f"token: {answer.status_code} {answer.data[:200]!r}")
        return dict(answer.get_json())

    def authorize(self, client: Any) -> tuple[Any, str]:
        verifier, challenge = flows.pkce()
        return client.get("/authorize?" + urlencode(flows.authorization_params(self.target, challenge))), verifier


def _code(location: str) -> str:
    return parse_qs(urlsplit(location).query)["code"][0]


def profiles(app: Any, seeded: Seeded, sink: SmtpSink, *, count: int) -> list[dict[str, Any]]:
    """Profiles of the refresh grant, SSO authorize + code exchange, userinfo and a full login."""
    browser = _Browser(app, seeded)
    user = seeded.users[0]
    api = browser.client()
    state = {"refresh": user.refresh_token or "", "access": user.access_token or ""}

    def refresh() -> None:
        tokens = browser.token(api, {"grant_type": "refresh_token", "refresh_token": state["refresh"]})
        state["refresh"], state["access"] = tokens["refresh_token"], tokens["access_token"]

    sso = browser.client(idp_session=user.session_cookie or "")

    def code_flow() -> None:
        answer, verifier = browser.authorize(sso)
        if answer.status_code != 302:
            raise flows.Unexpected(f"authorize (SSO): {answer.status_code}")
        browser.token(api, {"grant_type": "authorization_code", "code": _code(answer.headers["Location"]),
                            "redirect_uri": flows.REDIRECT_URI, "code_verifier": verifier})

    def userinfo() -> None:
        answer = api.get("/userinfo", headers={"Authorization": f"Bearer {state['access']}"})
        if answer.status_code != 200:
            raise flows.Unexpected(f"userinfo: {answer.status_code}")

    def login() -> None:
        _login(browser, seeded.users[-1], sink)

    found = []
    refresh()  # leaves an access token for userinfo, and warms every import
    for slug, name, operation, times in (("refresh", "refresh grant", refresh, count),
                                         ("code", "authorize (SSO) + code exchange", code_flow, count),
                                         ("userinfo", "userinfo", userinfo, count),
                                         ("login", "full login (e-mail code)", login, max(3, count // 5))):
        operation()  # warm-up outside the profile
        result = measure.profile(name, operation, count=times)
        result["slug"] = slug
        found.append(result)
    user.refresh_token, user.access_token = state["refresh"], state["access"]
    return found


def _login(browser: _Browser, user: flows.VirtualUser, sink: SmtpSink) -> None:
    client = browser.client()
    answer, verifier = browser.authorize(client)
    page = client.get("/connexion")
    before = sink.seen(user.email)
    answer = client.post("/connexion", data={"csrf_token": flows.csrf_of(page.get_data(as_text=True)), "nir": user.nir,
                                             "password": user.password})
    if not answer.headers.get("Location", "").endswith("/connexion/code"):
        raise flows.Unexpected(f"identify: {answer.status_code} {answer.headers.get('Location')}")
    page = client.get("/connexion/code")
    code = sink.wait_code(user.email, before)
    answer = client.post("/connexion/code", data={"csrf_token": flows.csrf_of(page.get_data(as_text=True)), "code": code})
    if answer.status_code != 303 or not answer.headers.get("Location", "").startswith(flows.REDIRECT_URI):
        raise flows.Unexpected(f"code check: {answer.status_code} {answer.headers.get('Location')}")
    browser.token(client, {"grant_type": "authorization_code", "code": _code(answer.headers["Location"]),
                           "redirect_uri": flows.REDIRECT_URI, "code_verifier": verifier})
