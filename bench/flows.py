"""What the virtual users do: the full web login (as a browser does it) and the RP's calls.

Each operation times its steps with :class:`bench.load.Timer`; step names ending in ``*`` are not
server steps (the wait for the e-mail in the SMTP sink) and are left out of the "non-hashing steps"
figure of the report. The login steps that hash a password are marked ``(argon2id)``.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

from bench.client import Connection, basic_auth
from bench.infra import SmtpSink
from bench.load import Exhausted, Timer

REDIRECT_URI = "https://rp.example/callback"
SCOPE = "openid email"
HASHING_STEP = "identify (argon2id)"
CSRF = "csrf_token"


class Unexpected(RuntimeError):
    """The server answered something else than the journey expects."""


@dataclass
class Target:
    """One provider under test and the confidential client registered on it."""

    name: str
    base_url: str
    client_id: str
    client_secret: str
    token_path: str = "/token"
    userinfo_path: str = "/userinfo"
    jwks_path: str = "/jwks"
    discovery_path: str = "/.well-known/openid-configuration"

    def auth(self) -> dict[str, str]:
        """client_secret_basic header."""
        return basic_auth(self.client_id, self.client_secret)


@dataclass
class VirtualUser:
    """A person with a browser (cookies) and the RP's tokens for them."""

    index: int
    nir: str = ""
    password: str = ""
    email: str = ""
    trusted_cookie: str | None = None
    session_cookie: str | None = None
    refresh_token: str | None = None
    access_token: str | None = None
    connections: dict[str, Connection] = field(default_factory=dict)

    def connection(self, base_url: str) -> Connection:
        """This user's keep-alive connection to ``base_url``."""
        if base_url not in self.connections:
            self.connections[base_url] = Connection(base_url)
        return self.connections[base_url]


def pkce() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge), RFC 7636 §4.1-4.2."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorization_params(target: Target, challenge: str) -> dict[str, str]:
    """An authorization request of the bench RP (code + PKCE S256)."""
    return {"response_type": "code", "client_id": target.client_id, "redirect_uri": REDIRECT_URI, "scope": SCOPE,
            "state": secrets.token_urlsafe(8), "nonce": secrets.token_urlsafe(8), "code_challenge": challenge,
            "code_challenge_method": "S256"}


def _expect(response: requests.Response, status: int, path_end: str | None = None) -> str:
    location = response.headers.get("Location", "")
    if response.status_code != status or (path_end is not None and not urlsplit(location).path.endswith(path_end)):
        raise Unexpected(f"{response.request.method} {urlsplit(response.url).path}: {response.status_code} "
                         f"-> {urlsplit(location).path or response.text[:120]!r}")
    return location


def csrf_of(html: str) -> str:
    """The CSRF token of the first form of a page."""
    marker = f'name="{CSRF}"'
    at = html.find(marker)
    start = html.find('value="', at) + len('value="') if at >= 0 else -1
    if start < len('value="'):
        raise Unexpected("no CSRF token in the page")
    return html[start:html.find('"', start)]


def _code_from(location: str) -> str:
    query = parse_qs(urlsplit(location).query)
    if "code" not in query:
        raise Unexpected(f"no code in the redirect: {sorted(query)}")
    return query["code"][0]


class IdpJourney:
    """The browser side of a login on the IdP's hosted pages (DESIGN.md §6 form fields)."""

    def __init__(self, target: Target, sink: SmtpSink) -> None:
        self.target, self.sink = target, sink
        self.base = target.base_url

    def login(self, user: VirtualUser, timer: Timer, *, use_trusted: bool = False, tick_trusted: bool = False) -> None:
        """authorize -> identify -> [code from the sink] -> resume -> token exchange, in a fresh browser
        that keeps only the trusted-browser cookie (``use_trusted``)."""
        browser = requests.Session()
        if use_trusted:
            if not user.trusted_cookie:
                raise Unexpected("virtual user has no trusted-browser cookie")
            browser.cookies.set("idp_trusted", user.trusted_cookie, domain="127.0.0.1", path="/")
        verifier, challenge = pkce()
        t = time.perf_counter()
        answer = browser.get(self.base + "/authorize", params=authorization_params(self.target, challenge),
                             allow_redirects=False)
        _expect(answer, 303, "/connexion")
        t = timer.step("authorize", t)
        page = browser.get(self.base + "/connexion", allow_redirects=False)
        _expect(page, 200)
        t = timer.step("login page", t)
        before = self.sink.seen(user.email)
        form = {CSRF: csrf_of(page.text), "nir": user.nir, "password": user.password}
        if tick_trusted:
            form["trusted_browser"] = "on"
        answer = browser.post(self.base + "/connexion", data=form, allow_redirects=False)
        location = _expect(answer, 303)
        t = timer.step(HASHING_STEP, t)
        if urlsplit(location).path.endswith("/connexion/code"):
            location, t = self._code_steps(browser, user, timer, before, t)
            if tick_trusted:
                user.trusted_cookie = browser.cookies.get("idp_trusted") or user.trusted_cookie
        if not location.startswith(REDIRECT_URI + "?"):  # the login's last step answers the RP (with the code)
            raise Unexpected(f"identify redirected to {urlsplit(location).path}")
        code = _code_from(location)
        user.session_cookie = browser.cookies.get("idp_session")
        self._exchange(user, code, verifier, timer, t, browser)

    def _code_steps(self, browser: requests.Session, user: VirtualUser, timer: Timer, before: int,
                    t: float) -> tuple[str, float]:
        """Code page, code check; returns where the check sent the browser (the RP's answer) and the time."""
        page = browser.get(self.base + "/connexion/code", allow_redirects=False)
        _expect(page, 200)
        t = timer.step("code page", t)
        code = self.sink.wait_code(user.email, before)
        t = timer.step("e-mail delivery wait*", t)
        answer = browser.post(self.base + "/connexion/code", data={CSRF: csrf_of(page.text), "code": code},
                              allow_redirects=False)
        location = _expect(answer, 303)
        return location, timer.step("code check (answers the RP)", t)

    def _exchange(self, user: VirtualUser, code: str, verifier: str, timer: Timer, t: float,
                  browser: requests.Session) -> None:
        answer = browser.post(self.base + self.target.token_path, headers=self.target.auth(), allow_redirects=False,
                              data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
                                    "code_verifier": verifier})
        if answer.status_code != 200:
            raise Unexpected(f"token: {answer.status_code} {answer.text[:200]!r}")
        tokens = answer.json()
        user.refresh_token, user.access_token = tokens.get("refresh_token"), tokens["access_token"]
        timer.step("token (code exchange)", t)


# --- RP calls (same code for the IdP and the peer) -------------------------------------------
def _ok(answer: Any, what: str) -> Any:
    if answer.status != 200:
        raise Unexpected(f"{what}: {answer.status} {answer.body[:200]!r}")
    return answer


def refresh(target: Target, user: VirtualUser, timer: Timer) -> None:
    """RFC 6749 §6 refresh grant with rotation: the new refresh token replaces the old one."""
    if not user.refresh_token:
        raise Exhausted
    t = time.perf_counter()
    answer = _ok(user.connection(target.base_url).request(
        "POST", target.token_path, headers=target.auth(),
        form={"grant_type": "refresh_token", "refresh_token": user.refresh_token}), "refresh")
    timer.step("token (refresh)", t)
    tokens = answer.json()
    user.refresh_token, user.access_token = tokens["refresh_token"], tokens["access_token"]


def userinfo(target: Target, user: VirtualUser, timer: Timer) -> None:
    """OIDC Core §5.3 with the user's access token."""
    t = time.perf_counter()
    _ok(user.connection(target.base_url).request(
        "GET", target.userinfo_path, headers={"Authorization": f"Bearer {user.access_token}"}), "userinfo")
    timer.step("userinfo", t)


def jwks(target: Target, user: VirtualUser, timer: Timer) -> None:
    """The published keys."""
    t = time.perf_counter()
    _ok(user.connection(target.base_url).request("GET", target.jwks_path), "jwks")
    timer.step("jwks", t)


def discovery(target: Target, user: VirtualUser, timer: Timer) -> None:
    """The discovery document."""
    t = time.perf_counter()
    _ok(user.connection(target.base_url).request("GET", target.discovery_path), "discovery")
    timer.step("discovery", t)


class CodePool:
    """Authorization codes waiting to be exchanged (thread-safe)."""

    def __init__(self) -> None:
        self._codes: deque[tuple[str, str]] = deque()
        self._lock = threading.Lock()

    def add(self, code: str, verifier: str) -> None:
        """One more code with its PKCE verifier."""
        with self._lock:
            self._codes.append((code, verifier))

    def take(self) -> tuple[str, str]:
        """The oldest code; :class:`Exhausted` when none is left."""
        with self._lock:
            if not self._codes:
                raise Exhausted
            return self._codes.popleft()

    def __len__(self) -> int:
        return len(self._codes)


def authorize_with_session(target: Target, pool: CodePool, user: VirtualUser, timer: Timer) -> None:
    """GET /authorize with a live browser session (SSO): answered at once with a code, kept for later."""
    verifier, challenge = pkce()
    path = "/authorize?" + urlencode(authorization_params(target, challenge))
    t = time.perf_counter()
    answer = user.connection(target.base_url).request("GET", path, headers={"Cookie": f"idp_session={user.session_cookie}"})
    if answer.status != 302:
        raise Unexpected(f"authorize (SSO): {answer.status} {answer.body[:120]!r}")
    timer.step("authorize (SSO session)", t)
    pool.add(_code_from(answer.headers["location"]), verifier)


def exchange_code(target: Target, pool: CodePool, user: VirtualUser, timer: Timer) -> None:
    """RFC 6749 §4.1.3 code exchange with PKCE."""
    code, verifier = pool.take()
    t = time.perf_counter()
    _ok(user.connection(target.base_url).request(
        "POST", target.token_path, headers=target.auth(),
        form={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
              "code_verifier": verifier}), "code exchange")
    timer.step("token (code exchange)", t)
