"""Development helpers: the mailbox page (e-mails and SMS received by the demo sink)."""

from __future__ import annotations

from flask import Blueprint, Flask, render_template
from flask.typing import ResponseReturnValue

from idp.dev.mailbox import DevMailbox

dev_bp = Blueprint("dev", __name__, url_prefix="/dev")


@dev_bp.get("/mailbox")
def mailbox() -> ResponseReturnValue:
    """List the e-mails and SMS received by the development sink, newest first."""
    return render_template("dev/mailbox.html", messages=DevMailbox.current().messages())


def init_app(app: Flask) -> None:
    """Register the development pages (never called in production)."""
    app.register_blueprint(dev_bp)
