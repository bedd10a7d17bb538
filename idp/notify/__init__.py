"""E-mail and SMS notifications."""

from __future__ import annotations

from typing import cast

from flask import Flask, current_app

from idp.notify.sms import DevSmsGateway, HttpSmsGateway, SmsGateway


def init_app(app: Flask, sms: SmsGateway | None = None) -> None:
    """Attach the SMS gateway chosen by ``sms_backend`` (or an injected one)."""
    settings = app.extensions["idp.settings"]
    if sms is None:
        sms = HttpSmsGateway(settings.sms_url) if settings.sms_backend == "http" else DevSmsGateway()
    app.extensions["idp.sms"] = sms


def get_sms() -> SmsGateway:
    """The application's SMS gateway."""
    return cast(SmsGateway, current_app.extensions["idp.sms"])
