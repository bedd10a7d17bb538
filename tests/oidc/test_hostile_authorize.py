"""/authorize never answers 500 to hostile parameters: every parameter, one at a time, with generated
values (hypothesis), on a valid client and redirect URI (so that every check is reached), with and
without a browser session, by GET and POST. Plus the two replays named in issue 12."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from idp.oidc.authorize import REQUEST_PARAMS
from tests.oidc.conftest import Rp, flow, login, make_rp, query_of

EXAMPLES = settings(max_examples=20, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
PARAMETERS = [*REQUEST_PARAMS, "request", "request_uri", "registration"]

hostile = st.one_of(
    st.text(max_size=60),
    st.sampled_from(['{"id_token": {"acr": {"essential": true, "values": [[], {}, 3]}}}',
                     "", "²", "١٢", "1e309", "-1", "9" * 5000, "[" * 1000, "{" * 1000, '{"id_token": []}',
                     '{"id_token": {"acr": 3}}', '{"id_token": {"acr": {"values": 3, "essential": true}}}',
                     '{"userinfo": "x"}', '{"id_token": {"acr": {"essential": true, "value": []}}}', "null",
                     "none login", "consent none", "eidas1 eidas2 eidas3 inconnu", "a.b.c", "a.b.c.d.e",
                     "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "\x00", "openid offline_access", "S256 plain",
                     "code id_token", "https://evil.example/cb", "x" * 70_000]),
    st.integers().map(str),
)


@pytest.fixture
def rp(app: Any) -> Rp:
    return make_rp(app, "web")


@pytest.fixture
def with_session(app: Any, person: Any, rp: Rp) -> Any:
    """A browser that has a live session (logged in once with password and code)."""
    browser = app.test_client()
    login(app, browser, person, flow(rp))
    return browser


def _assert_no_server_error(response: Any) -> None:
    body = response.get_data(as_text=True)
    assert response.status_code < 500, (response.status_code, body[:300])
    assert "Traceback" not in body


@pytest.mark.parametrize("parameter", PARAMETERS)
@pytest.mark.parametrize("method", ["GET", "POST"])
@EXAMPLES
@given(value=hostile, session=st.booleans())
def test_no_parameter_value_makes_authorize_fail(app: Any, client: Any, with_session: Any, rp: Rp, parameter: str,
                                                method: str, value: str, session: bool) -> None:
    browser = with_session if session else client
    params = {**flow(rp).params, parameter: value}
    sent = {"query_string": params} if method == "GET" else {"data": params}
    response = browser.open("/authorize", method=method, **sent)
    _assert_no_server_error(response)


def test_deeply_nested_claims_is_invalid_request(app: Any, client: Any, rp: Rp) -> None:
    f = flow(rp, claims="[" * 1000)
    answer = query_of(client.get("/authorize", query_string=f.params))
    assert answer["error"] == "invalid_request" and answer["state"] == f.params["state"]


@pytest.mark.parametrize("max_age", ["²", "١٢", "9" * 5000, "-1", "1.5"])
def test_a_non_ascii_or_huge_max_age_with_a_session_is_invalid_request(with_session: Any, rp: Rp,
                                                                       max_age: str) -> None:
    response = with_session.get("/authorize", query_string=flow(rp, max_age=max_age).params)
    assert response.status_code == 302 and query_of(response)["error"] == "invalid_request"


@pytest.mark.parametrize("claims", ['{"id_token": []}', '{"userinfo": {"email": 1}}', '"texte"',
                                    '{"id_token": {"acr": {"essential": true, "values": 3}}}',
                                    '{"id_token": {"acr": {"essential": "oui", "value": "eidas1"}}}',
                                    '{"id_token": {"acr": {"value": ["eidas1"]}}}'])
def test_claims_of_the_wrong_shape_are_invalid_request(client: Any, rp: Rp, claims: str) -> None:
    assert query_of(client.get("/authorize", query_string=flow(rp, claims=claims).params))["error"] == \
        "invalid_request"
