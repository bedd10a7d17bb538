"""JSON logs with a request id, and a redaction filter.

Logs never carry a NIR, a password, a security code or a secret: call sites only log opaque ids,
and :class:`RedactingFilter` is a second line of defence that masks anything shaped like a NIR
(13 or 15 digits, Corsican 2A/2B included) or a 6-digit code field before a record is written.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask, Response

_NIR_SHAPE = re.compile(r"(?<![0-9A-Za-z])[12378][ .]?\d{2}[ .]?\d{2}[ .]?(?:\d{2}|2[AaBb])(?:[ .]?\d{3}){2}(?:[ .]?\d{2})?"
                        r"(?![0-9])")
_SECRET_KEYS = re.compile(r"pass|secret|code|nir|token|otp|key|cookie|authorization", re.I)
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")
_STD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id"}


def redact(text: str) -> str:
    """Mask NIR-shaped substrings."""
    return _NIR_SHAPE.sub("[NIR]", text)


class RedactingFilter(logging.Filter):
    """Masks NIR shapes in messages and drops extra fields whose name suggests a secret."""

    ALLOWED_SECRETISH = frozenset({"error", "status_code", "key_id", "kid", "client_id", "code_sent"})

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place; never drops it."""
        if record.args:
            record.msg = record.getMessage()
            record.args = None
        record.msg = redact(str(record.msg))
        fields = vars(record)
        for name in fields.keys() - _STD_ATTRS - self.ALLOWED_SECRETISH:  # the extra fields only
            if _SECRET_KEYS.search(name):
                fields[name] = "[REDACTED]"
            elif isinstance(fields[name], str):
                fields[name] = redact(fields[name])
        return True


class RequestIdFilter(logging.Filter):
    """Adds the current request id (or '-') to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Attach ``request_id`` (unless the caller gave it: the access log does)."""
        if "request_id" in vars(record):
            return True
        from flask import g, has_request_context

        record.request_id = getattr(g, "request_id", "-") if has_request_context() else "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id and extra fields."""

    _second: tuple[int, str] = (-1, "")

    def _timestamp(self, created: float) -> str:
        """ISO 8601 UTC with milliseconds (``2026-12-01T23:40:00.123+00:00``); the part up to the second is
        made once per second."""
        second = int(created)
        if self._second[0] != second:
            self._second = (second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
        return f"{self._second[1]}.{int((created - second) * 1000):03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        """Serialise the record."""
        payload: dict[str, Any] = {
            "ts": self._timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        for name, value in vars(record).items():
            if name not in _STD_ATTRS and not name.startswith("_"):
                payload[name] = value if isinstance(value, int | float | bool | None) else str(value)
        if record.exc_info:
            payload["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(payload, ensure_ascii=False)


def configure_logging(level: str) -> None:
    """Install the JSON handler on the root logger once (idempotent across create_app calls)."""
    root = logging.getLogger()
    if not any(getattr(h, "_idp", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler.addFilter(RequestIdFilter())
        handler.addFilter(RedactingFilter())
        handler._idp = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level.upper())
    # What JsonFormatter never writes is not gathered for every record either (the Logging HOWTO's
    # "Optimization" settings): the caller's file, line and function, a walk up the stack at every record
    # (every request writes an access line). The thread and process ids stay: gunicorn's own log format
    # prints the process id with %d, which a None would break.
    logging._srcfile = None
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def request_id(incoming: str | None) -> str:
    """The request id: a well-formed incoming X-Request-Id, or a new random one. One holding a NIR shape is
    replaced too: the id is written on every log line of the request, where no filter rewrites it."""
    if incoming and _REQUEST_ID.fullmatch(incoming) and not _NIR_SHAPE.search(incoming):
        return incoming
    return secrets.token_hex(8)


_ACCESS = logging.getLogger("idp.access")
REQUEST_ID = "idp.request_id"  # WSGI environ: the id a layer in front of Flask gave the request (no header sets it)


def log_access(rid: str, method: str, path: str, status: int, elapsed_ms: float) -> None:
    """The access log's line for one answered request (``path``: the route pattern, never a raw path that
    may carry a bearer secret)."""
    if _ACCESS.isEnabledFor(logging.INFO):
        _ACCESS.info("request", extra={"request_id": rid, "method": method, "path": path, "status_code": status,
                                       "ms": round(elapsed_ms, 1)})


def init_request_logging(app: Flask) -> None:
    """Give every request an id (from a well-formed X-Request-Id or a new one) and log its outcome."""
    from flask import g, request

    @app.before_request
    def _start() -> None:
        # A WSGI layer in front of Flask that passed the request on may have given it its id already.
        g.request_id = request.environ.get(REQUEST_ID) or request_id(request.headers.get("X-Request-Id"))
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response: Response) -> Response:
        rid = response.headers["X-Request-Id"] = getattr(g, "request_id", "-")
        elapsed = (time.perf_counter() - getattr(g, "started", time.perf_counter())) * 1000
        if not _ACCESS.isEnabledFor(logging.INFO):
            return response
        # The route pattern, not the raw path: a path may carry a bearer secret (a reset link's token).
        rule = request.url_rule
        log_access(rid, request.method, rule.rule if rule is not None else redact(request.path),
                   response.status_code, elapsed)
        return response
