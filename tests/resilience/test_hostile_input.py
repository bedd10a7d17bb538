"""Hostile input on every form and OIDC endpoint (hypothesis): always a 4xx or the normal page, never a 5xx.

Generated: oversized fields (past the 64 KiB body limit too), control characters and lone
surrogates' UTF-8 stand-ins, invalid UTF-8 bytes in the body and the query string, wrong types
(numbers, JSON where a form is expected), repeated parameters, huge and corrupt cookies (interaction,
remembered NIR, trusted browser, session, CSRF). Each example is sent with and without a live login
interaction and a valid CSRF token so that the handlers are reached, not only the CSRF check.

The JSON endpoints (token, userinfo, revocation, introspection, discovery, JWKS) get the same
treatment plus random client authentication headers and grant types, and must answer JSON with an
``error`` member whenever they refuse (the role schemathesis would play from an OpenAPI document).
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import csrf_from
from tests.login.conftest import bind, make_account, new_interaction

pytestmark = pytest.mark.filterwarnings("ignore:The '.*' cookie is too large:UserWarning")

EXAMPLES = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

FORMS = [
    ("POST", "/connexion"), ("GET", "/connexion"), ("POST", "/connexion/code"), ("POST", "/connexion/code/nouveau"),
    ("POST", "/connexion/email"), ("POST", "/connexion/conditions"), ("POST", "/connexion/biometrie"),
    ("POST", "/connexion/oublier-numero"), ("GET", "/connexion/suite"),
    ("POST", "/compte/creation"), ("POST", "/compte/recreation"), ("POST", "/compte/creation/email"),
    ("POST", "/compte/creation/code"), ("POST", "/compte/creation/code/nouveau"),
    ("POST", "/compte/creation/mot-de-passe"), ("POST", "/mot-de-passe-oublie"),
    ("POST", "/mot-de-passe/nouveau/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), ("POST", "/biometrie/proposition"),
    ("POST", "/biometrie/activation/options"), ("POST", "/biometrie/activation/verifier"),
    ("POST", "/connexion/biometrie/options"), ("POST", "/connexion/biometrie/verifier"),
    ("GET", "/authorize"), ("POST", "/authorize"), ("GET", "/authorize/resume"), ("GET", "/logout"),
    ("POST", "/logout"), ("GET", "/compte/biometrie"), ("GET", "/"),
]
API = [("POST", "/token"), ("GET", "/userinfo"), ("POST", "/userinfo"), ("POST", "/revoke"),
       ("POST", "/introspect"), ("GET", "/.well-known/openid-configuration"), ("GET", "/jwks")]
FIELDS = ["nir", "password", "code", "email", "action", "choice", "accept", "terms_id", "remember_nir",
          "trusted_browser", "birthdate", "vitale", "iban_end", "password_confirm", "response_type", "client_id",
          "redirect_uri", "scope", "state", "nonce", "code_challenge", "code_challenge_method", "prompt", "max_age",
          "claims", "id_token_hint", "acr_values", "post_logout_redirect_uri", "confirm", "grant_type",
          "refresh_token", "code_verifier", "token", "token_type_hint", "client_secret", "client_assertion",
          "client_assertion_type", "access_token", "credential", "x"]
COOKIES = ["idp_interaction", "idp_nir", "idp_trusted", "idp_session", "idp_csrf", "__Host-idp_interaction"]

hostile_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8", categories=["Cc", "Cf", "Zl", "Zp", "Co"]), max_size=40),
    st.sampled_from(["", " ", "0", "-1", "1e309", "null", "[]", "{}", '{"a":', "\x00", "%00", "../../etc/passwd",
                     "<script>alert(1)</script>", "' OR '1'='1", "2A" * 40, "9" * 15, "١٢٣٤٥٦", "ﬀ" * 20]),
    st.integers(min_value=1, max_value=70_000).map(lambda n: "A" * n),  # up to past MAX_CONTENT_LENGTH
    st.integers().map(str),
)
fields = st.lists(st.tuples(st.sampled_from(FIELDS), hostile_text), max_size=8)  # repeats allowed
raw_bytes = st.binary(max_size=300).map(lambda b: b + b"\xff\xfe\xc3\x28")  # always invalid UTF-8
cookies = st.dictionaries(st.sampled_from(COOKIES), st.one_of(
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=';,"\\'), max_size=40),
    st.integers(min_value=4000, max_value=16_000).map(lambda n: "x" * n)), max_size=3)


@pytest.fixture
def hostile(app: Any) -> Any:
    """A client with an account, a live interaction and the CSRF token of its session."""
    make_account(app)
    client = app.test_client()
    bind(client, new_interaction(app))
    return client, csrf_from(client.get("/connexion").data), new_interaction


def _assert_safe(response: Any) -> None:
    body = response.get_data(as_text=True)
    assert response.status_code < 500, (response.status_code, body[:300])
    assert "Traceback" not in body and 'File "' not in body


def _send(client: Any, method: str, path: str, *, data: Any = None, query: Any = None, headers: Any = None,
          content_type: str | None = None) -> Any:
    from urllib.parse import urlencode

    from werkzeug.datastructures import MultiDict

    if isinstance(query, list):  # repeated parameters stay repeated
        query = urlencode(query, encoding="utf-8", errors="surrogatepass")
    kwargs: dict[str, Any] = {"headers": headers or {}}
    if isinstance(query, bytes):  # raw bytes reach the app as WSGI does it (latin-1 str of the bytes)
        kwargs["environ_overrides"] = {"QUERY_STRING": query.decode("latin-1")}
    else:
        kwargs["query_string"] = query
    if method == "POST":
        kwargs["data"] = MultiDict(data) if isinstance(data, list) else data
        if content_type:
            kwargs["content_type"] = content_type
    return client.open(path, method=method, **kwargs)


@pytest.mark.parametrize(("method", "path"), FORMS + API, ids=[f"{m} {p}" for m, p in FORMS + API])
@EXAMPLES
@given(form=fields, query=fields, jar=cookies, with_csrf=st.booleans(), live=st.booleans())
def test_hostile_fields_and_cookies_never_cause_a_5xx(app: Any, hostile: Any, method: str, path: str,
                                                      form: list[tuple[str, str]], query: list[tuple[str, str]],
                                                      jar: dict[str, str], with_csrf: bool, live: bool) -> None:
    """Random, oversized, repeated and control-character fields; huge or corrupt cookies."""
    client, token, _ = hostile
    if live:
        bind(client, new_interaction(app))
    for name, value in jar.items():
        client.set_cookie(name, value, domain="localhost")
    data = [*form, *([("csrf_token", token)] if with_csrf else [])]
    _assert_safe(_send(client, method, path, data=data, query=query))
    for name in jar:
        client.delete_cookie(name, domain="localhost")


@pytest.mark.parametrize(("method", "path"), FORMS + API, ids=[f"{m} {p}" for m, p in FORMS + API])
@EXAMPLES
@given(body=raw_bytes, query=raw_bytes, json_body=st.booleans())
def test_invalid_utf8_and_wrong_content_types_never_cause_a_5xx(hostile: Any, method: str, path: str, body: bytes,
                                                                query: bytes, json_body: bool) -> None:
    """Bytes that are not UTF-8 in the body and the query string; a JSON content type on form endpoints."""
    client, _, _ = hostile
    content_type = "application/json" if json_body else "application/x-www-form-urlencoded"
    _assert_safe(_send(client, method, path, data=body, query=query, content_type=content_type))


auth_headers = st.one_of(
    st.none(),
    st.binary(max_size=80).map(lambda b: "Basic " + base64.b64encode(b).decode()),
    st.tuples(hostile_text, hostile_text).map(
        lambda t: "Basic " + base64.b64encode(f"{t[0][:200]}:{t[1][:200]}".encode("utf-8", "surrogatepass")).decode()),
    hostile_text.map(lambda t: "Bearer " + t[:300].encode("ascii", "ignore").decode()),
    st.sampled_from(["Basic", "Bearer", "Basic ====", "Digest x", "Bearer " + "a" * 9000]),
)


@pytest.mark.parametrize(("method", "path"), API, ids=[f"{m} {p}" for m, p in API])
@EXAMPLES
@given(form=fields, grant=st.sampled_from(["authorization_code", "refresh_token", "password", "client_credentials",
                                           "implicit", "urn:ietf:params:oauth:grant-type:jwt-bearer", "", "ÿ"]),
       authorization=auth_headers)
def test_json_endpoints_answer_json_errors(hostile: Any, method: str, path: str, form: list[tuple[str, str]],
                                           grant: str, authorization: str | None) -> None:
    """Token, userinfo, revocation, introspection, discovery, JWKS: 2xx, or a 4xx JSON ``error``."""
    client, _, _ = hostile
    headers = {"Authorization": authorization} if authorization else {}
    response = _send(client, method, path, data=[("grant_type", grant), *form], headers=headers)
    _assert_safe(response)
    if response.status_code >= 400 and response.status_code not in (405, 413):
        assert response.is_json and "error" in response.json, (response.status_code, response.data[:200])


@pytest.mark.parametrize("path", ["/connexion", "/authorize"])
def test_query_string_that_is_not_utf8_is_a_400(hostile: Any, path: str) -> None:
    """Found by the property test: werkzeug raised UnicodeDecodeError from ``request.args`` (a 500)."""
    client, _, _ = hostile
    response = client.get(path, environ_overrides={"QUERY_STRING": "renouvele=\xff\xfe"})
    assert response.status_code == 400
    assert "Traceback" not in response.get_data(as_text=True)


@pytest.mark.parametrize("path", ["/token", "/revoke", "/introspect", "/userinfo"])
@pytest.mark.parametrize("header", ["Basic", "Bearer", "  "])
def test_authorization_header_without_credentials_is_a_400_json(hostile: Any, path: str, header: str) -> None:
    """Found by the property test: Authlib unpacked ``Authorization: Basic`` and raised (a 500)."""
    client, _, _ = hostile
    response = client.post(path, data={"grant_type": "refresh_token", "token": "x"}, headers={"Authorization": header})
    assert response.status_code in (400, 401) and response.is_json and response.json["error"]
