"""The French home page and the health endpoints."""

from __future__ import annotations

from flask import Blueprint, Flask, current_app, jsonify, render_template
from flask.typing import ResponseReturnValue
from sqlalchemy import text

from idp.extensions import csrf, db, redis_client
from idp.redis_store import ping

home_bp = Blueprint("home", __name__)
health_bp = Blueprint("health", __name__)


@home_bp.get("/")
def index() -> ResponseReturnValue:
    """The home page: what this service is, in French."""
    endpoints = current_app.view_functions
    return render_template("home.html", demo_rp="demo_rp.index" in endpoints, mailbox="dev.mailbox" in endpoints)


@health_bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """Liveness: the process answers."""
    return jsonify(status="ok")


@health_bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    """Readiness: the database and Redis answer; 503 otherwise (load balancers stop sending traffic)."""
    checks = {"database": _database_ok(), "redis": ping(redis_client())}
    ready = all(checks.values())
    body = {"status": "ok" if ready else "unavailable", "checks": {k: "ok" if v else "down" for k, v in checks.items()}}
    return jsonify(body), 200 if ready else 503


def _database_ok() -> bool:
    try:
        db.session.execute(text("SELECT 1"))
        return True
    except Exception:
        db.session.rollback()
        return False


def init_app(app: Flask) -> None:
    """Register the blueprints."""
    csrf.exempt(health_bp)
    app.register_blueprint(home_bp)
    app.register_blueprint(health_bp)
