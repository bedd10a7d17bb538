"""Demo preparation for ``idp demo`` / ``make run`` (development only)."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask

log = logging.getLogger(__name__)

# Hooks run in order by prepare_demo; areas append (name, function(app)) here.
DEMO_STEPS: list[tuple[str, Any]] = []


def prepare_demo(app: Flask) -> Any:
    """Migrate, start the SMTP sink, then run every area's demo step; returns the sink controller."""
    from idp.cli import upgrade_database
    from idp.dev.mailbox import DevMailbox, start_smtp_sink

    settings = app.extensions["idp.settings"]
    with app.app_context():
        upgrade_database()
        sink = None
        try:
            sink = start_smtp_sink(DevMailbox.current(), settings.smtp_host, settings.smtp_port)
        except OSError as exc:
            log.warning("SMTP sink not started (port busy?)", extra={"error": str(exc)})
        for name, step in DEMO_STEPS:
            log.info("demo step", extra={"step": name})
            step(app)
    return sink
