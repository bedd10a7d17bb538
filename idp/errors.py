"""Errors as classes, rendered in one place.

Each error has a machine ``code``, an HTTP ``status``, a ``description`` that is safe to show (French,
for people; RPs get it as ``error_description``) and an internal ``detail`` that only goes to logs.
:func:`register_error_handlers` turns them into JSON for API clients and French pages for people;
no traceback ever reaches a client (anchor: authlib ``oauth2/rfc6749/errors.py``, werkzeug
``exceptions.py``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from flask import Flask, Response

log = logging.getLogger(__name__)


class SettingsError(Exception):
    """A setting is missing, malformed or insecure; ``setting`` names it (e.g. ``IDP_SECRET_KEY``)."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting
        self.message = message


class IdpError(Exception):
    """Base of every error shown to a person or an API client."""

    code: ClassVar[str] = "server_error"
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Une erreur est survenue"
    description: str = "Une erreur inattendue est survenue. Merci de réessayer plus tard."

    def __init__(self, description: str | None = None, *, detail: str = "", **context: Any) -> None:
        if description is not None:
            self.description = description
        self.detail = detail
        self.context = context
        super().__init__(detail or self.description)


class BadRequest(IdpError):
    """The request is malformed; nothing was changed."""

    code = "invalid_request"
    status = 400
    title = "Demande incorrecte"
    description = "La demande est incorrecte ou incomplète. Merci de vérifier votre saisie."


class NotFound(IdpError):
    """The page or resource does not exist."""

    code = "not_found"
    status = 404
    title = "Page introuvable"
    description = "La page que vous cherchez n'existe pas ou a été déplacée."


class Forbidden(IdpError):
    """The caller may not do this."""

    code = "forbidden"
    status = 403
    title = "Accès refusé"
    description = "Vous n'avez pas accès à cette page."


class TooManyRequests(IdpError):
    """A rate limit was reached."""

    code = "too_many_requests"
    status = 429
    title = "Trop de tentatives"
    description = "Trop de tentatives ont été faites depuis votre connexion. Merci de réessayer plus tard."


class ServiceUnavailable(IdpError):
    """A dependency (database, Redis, registry, mail) is unreachable: fail closed, say so."""

    code = "temporarily_unavailable"
    status = 503
    title = "Service momentanément indisponible"
    description = "Le service est momentanément indisponible. Merci de réessayer dans quelques instants."


_PAGE_TITLES = {
    400: ("Demande incorrecte", "La demande est incorrecte ou incomplète."),
    401: ("Authentification requise", "Vous devez vous connecter pour accéder à cette page."),
    403: ("Accès refusé", "Vous n'avez pas accès à cette page."),
    404: (NotFound.title, NotFound.description),
    405: ("Méthode non autorisée", "Cette adresse ne peut pas être utilisée de cette façon."),
    413: ("Demande trop volumineuse", "Les données envoyées sont trop volumineuses."),
    429: (TooManyRequests.title, TooManyRequests.description),
    431: ("Demande trop volumineuse", "Les en-têtes ou les cookies envoyés sont trop volumineux. "
          "Effacez les cookies de votre navigateur puis réessayez."),
    500: (IdpError.title, IdpError.description),
    503: (ServiceUnavailable.title, ServiceUnavailable.description),
}


def wants_json() -> bool:
    """True for API callers: JSON endpoints, or an Accept header preferring JSON over HTML."""
    from flask import request

    if request.blueprint in {"oidc_api", "health"} or request.path.startswith("/api/"):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json" and request.accept_mimetypes["application/json"] > \
        request.accept_mimetypes["text/html"]


def render_error(status: int, code: str, title: str, description: str) -> Response:
    """The single renderer: JSON for APIs, a French page for people."""
    from flask import jsonify, make_response, render_template

    if wants_json():
        response = jsonify(error=code, error_description=description)
    else:
        response = make_response(render_template("error.html", title=title, description=description,
                                                 status=status), status)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


def is_dependency_failure(exc: BaseException) -> bool:
    """True when Redis or the database could not be reached (fail closed with a 503, never a 500)."""
    import redis.exceptions
    import sqlalchemy.exc

    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return True
    # A failover in progress: a Cluster without a master for some slots (CLUSTERDOWN, TRYAGAIN, a slot moved
    # under a node-level pipeline, not covered yet), or a write reaching a primary just demoted (READONLY).
    if isinstance(exc, redis.exceptions.ClusterError | redis.exceptions.TryAgainError | redis.exceptions.AskError
                  | redis.exceptions.ReadOnlyError | redis.exceptions.SlotNotCoveredError):
        return True
    if isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
        return True
    if isinstance(exc, sqlalchemy.exc.TimeoutError):  # no pooled connection free in time: overloaded
        return True
    return isinstance(exc, sqlalchemy.exc.DBAPIError) and bool(exc.connection_invalidated)


def register_error_handlers(app: Flask) -> None:
    """Install the handlers for IdpError, HTTP errors and everything else."""
    from werkzeug.exceptions import HTTPException

    @app.errorhandler(IdpError)
    def _idp_error(exc: IdpError) -> Response:
        level = logging.ERROR if exc.status >= 500 else logging.INFO
        log.log(level, "request failed", extra={"error": exc.code, "status": exc.status, "detail": exc.detail})
        response = render_error(exc.status, exc.code, exc.title, exc.description)
        if exc.status == 503:
            response.headers["Retry-After"] = "30"
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        title, description = _PAGE_TITLES.get(status, (exc.name, "La demande n'a pas pu aboutir."))
        code = exc.name.lower().replace(" ", "_")
        response = render_error(status, code, title, description)
        if status == 405 and hasattr(exc, "valid_methods") and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        if isinstance(exc, UnicodeDecodeError):
            # werkzeug decodes the query string lazily (request.args) and raises on bytes that are not
            # UTF-8: that is the client's malformed request, not a server error.
            return _idp_error(BadRequest(detail="request is not valid UTF-8"))
        if is_dependency_failure(exc):
            log.error("dependency unavailable", extra={"error": type(exc).__name__})
            return _idp_error(ServiceUnavailable(detail=type(exc).__name__))
        log.exception("unhandled error")
        title, description = _PAGE_TITLES[500]
        return render_error(500, "server_error", title, description)
