"""E-mail and SMS notifications."""

from __future__ import annotations

from typing import cast

from flask import Flask, current_app

from idp.notify.sms import HttpSmsGateway, SmsGateway


def init_app(app: Flask, sms: SmsGateway | None = None) -> None:
    """Attach the SMS gateway: the injected one (the development gateway of :mod:`idp.dev`, a test's), or
    the HTTP gateway of ``sms_url``."""
    settings = app.extensions["idp.settings"]
    if sms is None:
        if settings.sms_backend != "http":
            raise RuntimeError("sms_backend=dev needs the development gateway injected by create_app")
        sms = HttpSmsGateway(settings.sms_url)
    app.extensions["idp.sms"] = sms


def get_sms() -> SmsGateway:
    """The application's SMS gateway."""
    return cast(SmsGateway, current_app.extensions["idp.sms"])
