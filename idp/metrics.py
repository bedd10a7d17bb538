"""Prometheus metrics (prometheus-client): every definition here, one-line calls elsewhere.

Labels are closed sets (step outcomes, grant types, RFC error codes, URL rule patterns such as
``/reinitialisation/<token>``), never a value a person or an RP typed: no NIR, e-mail, code, token,
client secret or raw path appears in a label or a value.

Under gunicorn the workers share one view through prometheus-client's multiprocess mode: the gunicorn
config (config/gunicorn.conf.py) sets ``PROMETHEUS_MULTIPROC_DIR`` before any worker starts, and
:func:`registry` then aggregates the files of every worker.

Who may read them (:func:`init_app`): ``/metrics`` on the application answers with a bearer token equal to
``metrics_token`` (compared in constant time); without a token it is open in development and absent in
production. ``metrics_bind`` (``host:port``) serves them instead from the gunicorn master on a separate,
private address (:func:`serve_on`).
"""

from __future__ import annotations

import functools
import hmac
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

if TYPE_CHECKING:
    from flask import Flask, Response

F = TypeVar("F", bound=Callable[..., Any])

LOGINS = Counter("idp_logins_total", "Login steps by client kind, step (password, code) and outcome "
                 "(ok, wrong, locked, quota, throttled, invalid_input, expired, missing, mail_failed, "
                 "rfi_unavailable, unavailable).", ["client_kind", "step", "outcome"])
CODES_SENT = Counter("idp_security_codes_sent_total", "Security codes e-mailed (accepted by the relay).")
MAIL_FAILURES = Counter("idp_mail_failures_total", "E-mails the SMTP relay did not take.")
LOCKS = Counter("idp_locks_total", "Account locks set, by counter (pwd: passwords, code: security codes).",
                ["counter"])
WEBAUTHN = Counter("idp_webauthn_total", "WebAuthn ceremonies by ceremony (activation, sign_in) and outcome.",
                   ["ceremony", "outcome"])
TOKEN_GRANTS = Counter("idp_token_grants_total", "Token endpoint requests by grant type and outcome (ok, an "
                       "RFC 6749 error code, unavailable).", ["grant_type", "outcome"])
RFI_REQUESTS = Counter("idp_rfi_requests_total", "Registry (RFI) HTTP requests by outcome (ok, not_found, "
                       "timeout, error, breaker_open).", ["outcome"])
RFI_LATENCY = Histogram("idp_rfi_request_duration_seconds", "Duration of registry (RFI) HTTP requests.",
                        buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5))
HTTP_DURATION = Histogram("idp_http_request_duration_seconds", "HTTP requests by URL rule pattern, method and "
                          "status.", ["route", "method", "status"],
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))

_GRANT_TYPES = frozenset({"authorization_code", "refresh_token"})
_TOKEN_ERRORS = frozenset({"invalid_request", "invalid_client", "invalid_grant", "unauthorized_client",
                           "unsupported_grant_type", "invalid_scope"})

# Audit events that are also metrics: event -> (counter, labels, or a function of the event's data).
_WEBAUTHN_EVENTS = {
    "webauthn.activated": ("activation", "ok"),
    "webauthn.activation_refused": ("activation", "refused"),
    "webauthn.sign_in": ("sign_in", "ok"),
    "webauthn.sign_in_refused": ("sign_in", "refused"),
    "webauthn.unknown_credential": ("sign_in", "unknown_credential"),
    "webauthn.revoked_credential_used": ("sign_in", "revoked_credential"),
    "webauthn.expired_credential_used": ("sign_in", "expired_credential"),
}
_LOCKING_EVENTS = {"login_password_failed": "pwd", "code_failed": "code"}


def audited(event: str, data: dict[str, Any]) -> None:
    """Count what an audit event says (called by :func:`idp.audit.record` for every event)."""
    if event in _WEBAUTHN_EVENTS:
        ceremony, outcome = _WEBAUTHN_EVENTS[event]
        WEBAUTHN.labels(ceremony=ceremony, outcome=outcome).inc()
    elif event in _LOCKING_EVENTS and data.get("locked"):
        LOCKS.labels(counter=_LOCKING_EVENTS[event]).inc()


def code_sent() -> None:
    """A security code left by e-mail."""
    CODES_SENT.inc()


def mail_failed() -> None:
    """The relay did not take an e-mail."""
    MAIL_FAILURES.inc()


def login_step(step: str) -> Callable[[F], F]:
    """Decorate a login step ``(interaction, ...) -> StepResult``: count it by the interaction's client kind
    and the result's outcome; an exception counts as ``rfi_unavailable`` (registry) or ``unavailable``."""
    def decorate(function: F) -> F:
        @functools.wraps(function)
        def counted(interaction: Any, *args: Any, **kwargs: Any) -> Any:
            kind = str(getattr(interaction, "client_kind", "") or "unknown")
            try:
                result = function(interaction, *args, **kwargs)
            except Exception as exc:
                outcome = "rfi_unavailable" if getattr(exc, "code", "") == "registry_unavailable" else "unavailable"
                LOGINS.labels(client_kind=kind, step=step, outcome=outcome).inc()
                raise
            LOGINS.labels(client_kind=kind, step=step, outcome=str(result.outcome.value)).inc()
            return result
        return counted  # type: ignore[return-value]
    return decorate


def token_grant(answer: F) -> F:
    """Decorate the token endpoint's answer (a function of the request, through Flask or its WSGI layer):
    count each request by grant type and outcome."""
    @functools.wraps(answer)
    def counted(req: Any, *args: Any, **kwargs: Any) -> Any:
        grant = req.form.get("grant_type", "")
        grant = grant if grant in _GRANT_TYPES else "other"
        try:
            response = answer(req, *args, **kwargs)
        except Exception:
            TOKEN_GRANTS.labels(grant_type=grant, outcome="unavailable").inc()
            raise
        outcome = "ok"
        if response.status_code != 200:
            error = (response.get_json(silent=True) or {}).get("error", "")
            outcome = error if error in _TOKEN_ERRORS else "other"
        TOKEN_GRANTS.labels(grant_type=grant, outcome=outcome).inc()
        return response
    return counted  # type: ignore[return-value]


def rfi_request(call: F) -> F:
    """Decorate one registry HTTP request: its outcome (by the exception it raises) and its duration."""
    @functools.wraps(call)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        outcome = "error"
        try:
            result = call(*args, **kwargs)
            outcome = "ok"
            return result
        except Exception as exc:
            name = type(exc).__name__
            outcome = ("not_found" if name == "IdentityNotFound" else
                       "timeout" if str(exc) == "timeout" else "error")
            raise
        finally:
            RFI_REQUESTS.labels(outcome=outcome).inc()
            RFI_LATENCY.observe(time.monotonic() - started)
    return timed  # type: ignore[return-value]


def rfi_breaker_open() -> None:
    """A look-up refused at once because the circuit breaker is open."""
    RFI_REQUESTS.labels(outcome="breaker_open").inc()


def registry() -> CollectorRegistry:
    """What to expose: every worker's values in multiprocess mode, this process's otherwise."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        collected = CollectorRegistry()
        multiprocess.MultiProcessCollector(collected)
        return collected
    from prometheus_client import REGISTRY

    return REGISTRY


def serve_on(bind: str) -> None:
    """Serve the metrics on ``host:port`` from the calling process (the gunicorn master)."""
    from prometheus_client import start_http_server

    host, _, port = bind.rpartition(":")
    start_http_server(int(port), addr=host.strip("[]") or "127.0.0.1", registry=registry())


_HTTP_CHILDREN: dict[tuple[str, str, str], Any] = {}  # a closed set: route patterns x methods x statuses


def request_timer(route: str, method: str, status: str) -> Any:
    """The :data:`HTTP_DURATION` child of (route, method, status), bound once per process: ``.observe(seconds)``
    then costs no label validation or look-up under the metric's lock (every request is timed)."""
    child = _HTTP_CHILDREN.get((route, method, status))
    if child is None:
        child = _HTTP_CHILDREN[(route, method, status)] = HTTP_DURATION.labels(route=route, method=method,
                                                                              status=status)
    return child


def init_app(app: Flask) -> None:
    """Time every request by its URL rule, and expose ``/metrics`` when allowed (module docstring)."""
    from flask import abort, g, request

    settings = app.extensions["idp.settings"]

    @app.before_request
    def _start_timer() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _observe(response: Response) -> Response:
        started = g.pop("metrics_started", None)
        if started is not None:
            rule, method = request.url_rule, request.method
            request_timer(rule.rule if rule is not None else "unmatched", method if method in _METHODS else "OTHER",
                          str(response.status_code)).observe(time.perf_counter() - started)
        return response

    @app.get("/metrics")
    def metrics() -> Response:
        """Prometheus text format, for the configured readers only."""
        token = settings.metrics_token
        if token:
            scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(presented.encode(), token.encode()):
                abort(404)
        elif settings.is_production or settings.metrics_bind:
            abort(404)
        from flask import make_response

        response = make_response(generate_latest(registry()))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        response.headers["Cache-Control"] = "no-store"
        return response


_METHODS = frozenset({"GET", "POST", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH"})
