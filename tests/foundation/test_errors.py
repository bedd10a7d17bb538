"""Errors are rendered in one place: French pages for people, JSON for APIs, never a traceback."""

from __future__ import annotations

import pytest
from flask import Blueprint

from idp.errors import BadRequest, ServiceUnavailable


@pytest.fixture
def app(app):
    boom = Blueprint("boom", __name__)

    @boom.get("/boom")
    def explode():
        raise RuntimeError("secret internal detail /srv/idp/app.py line 42")

    @boom.get("/indisponible")
    def unavailable():
        raise ServiceUnavailable(detail="redis timeout")

    @boom.get("/api/bad")
    def bad():
        raise BadRequest("Le paramètre « x » est invalide.", detail="x=<script>")

    app.register_blueprint(boom)
    return app


def test_unknown_page_is_a_french_404(client):
    response = client.get("/nexiste-pas")
    assert response.status_code == 404
    assert "Page introuvable" in response.text
    assert 'lang="fr"' in response.text


def test_unexpected_error_is_a_french_500_without_traceback_or_detail(client):
    response = client.get("/boom")
    assert response.status_code == 500
    assert "Une erreur est survenue" in response.text
    assert "Traceback" not in response.text
    assert "secret internal detail" not in response.text


def test_service_unavailable_is_a_french_503_with_retry_after(client):
    response = client.get("/indisponible")
    assert response.status_code == 503
    assert "Service momentanément indisponible" in response.text
    assert response.headers["Retry-After"] == "30"
    assert "redis timeout" not in response.text


def test_api_callers_get_json_with_the_safe_description_only(client):
    response = client.get("/api/bad")
    assert response.status_code == 400
    assert response.json == {"error": "invalid_request", "error_description": "Le paramètre « x » est invalide."}


def test_json_is_chosen_from_the_accept_header(client):
    response = client.get("/nexiste-pas", headers={"Accept": "application/json"})
    assert response.status_code == 404
    assert response.json["error"] == "not_found"


def test_wrong_method_is_a_french_405_with_allow(client):
    response = client.post("/healthz")
    assert response.status_code == 405
    assert "GET" in response.headers["Allow"]


def test_pages_carry_strict_security_headers(client):
    headers = client.get("/").headers
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "Strict-Transport-Security" not in headers  # http issuer in development


def test_hsts_outside_development(clock, tmp_path):
    from idp import create_app
    from tests.conftest import base_config

    app = create_app(base_config(clock, None, issuer="https://localhost", redis_url="memory://",
                                 database_url=f"sqlite:///{tmp_path}/h.db"))
    response = app.test_client().get("/", base_url="https://localhost")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


def test_every_response_has_a_request_id_and_a_wellformed_one_is_kept(client):
    assert len(client.get("/healthz").headers["X-Request-Id"]) == 16
    assert client.get("/healthz", headers={"X-Request-Id": "abc-123-def-456"}).headers["X-Request-Id"] == \
        "abc-123-def-456"
    assert client.get("/healthz", headers={"X-Request-Id": "<script>"}).headers["X-Request-Id"] != "<script>"


@pytest.mark.parametrize("incoming", ["abc-123-def-456\n", "abc-123-def-456\r\nX-Evil: 1", "short", "é" * 10,
                                      "185077512345678", "rp-1850775123456-x", "2.85.07.2A.123.456.78"])
def test_a_request_id_that_is_not_wellformed_to_its_end_is_replaced(incoming):
    """Kept only when every character is allowed, to the last (``$`` would have let a final newline pass), and
    when it holds no NIR shape (an RP that used a NIR as its request id would put it on every log line)."""
    from idp.observability import request_id

    made = request_id(incoming)
    assert made != incoming and len(made) == 16
