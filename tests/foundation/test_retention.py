"""Retention (docs/CAPACITY.md "Retention policy", idp.retention): expired refresh-token families and audit events
older than the retention period are deleted in batches, by `idp tokens purge` and `idp audit purge --before`;
a date inside the retention period is refused; every purge is audited; nothing still in use is touched."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner

from tests.conftest import TEST_SECRET
from tests.oidc.conftest import flow, login, make_person, make_rp, redeem, token_request


def _family(app: Any, person: Any, rp: Any) -> str:
    """A login's refresh token, refreshed once: its family then holds a rotated row and a current one."""
    browser = app.test_client()
    f = flow(rp)
    issued = redeem(browser, rp, login(app, browser, person, f)["code"], f).json
    refreshed = token_request(browser, rp, {"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]})
    assert refreshed.status_code == 200
    return str(refreshed.json["refresh_token"])


def _refresh_rows(app: Any) -> int:
    from sqlalchemy import func, select

    from idp.extensions import db
    from idp.oidc.models import RefreshToken

    with app.app_context():
        return int(db.session.scalar(select(func.count()).select_from(RefreshToken)) or 0)


def _events(app: Any, name: str) -> list[Any]:
    from sqlalchemy import select

    from idp.audit import AuditEvent
    from idp.extensions import db

    with app.app_context():
        return list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == name)))


def test_the_refresh_token_purge_deletes_families_a_day_past_their_expiry_and_keeps_the_live_ones(
        any_app: Any, clock: Any) -> None:
    from idp import retention
    from idp.extensions import settings

    person, rp = make_person(any_app), make_rp(any_app)
    _family(any_app, person, rp)  # expires in 30 days
    with any_app.app_context():
        life = settings().refresh_token_ttl
    clock.advance(seconds=life - 3600)
    live = _family(any_app, person, rp)  # a newer family, 30 days to go
    assert _refresh_rows(any_app) == 4
    clock.advance(seconds=3600 + 12 * 3600)  # the first family expired 12 hours ago: still kept (a day's grace)
    with any_app.app_context():
        assert retention.purge_refresh_tokens(batch=1) == 0
    clock.advance(seconds=12 * 3600 + 1)
    with any_app.app_context():
        assert retention.purge_refresh_tokens(batch=1) == 2  # one row per batch: the loop runs to the end
    assert _refresh_rows(any_app) == 2
    assert [e.data["count"] for e in _events(any_app, "tokens.purged")] == [0, 2]
    assert len(_events(any_app, "tokens.purge_started")) == 2
    refreshed = token_request(any_app.test_client(), rp, {"grant_type": "refresh_token", "refresh_token": live})
    assert refreshed.status_code == 200, "the live family still refreshes"


def _add_events(app: Any, *ages_in_days: int) -> None:
    from idp.audit import AuditEvent
    from idp.extensions import clock, db

    with app.app_context():
        now = clock().now()
        db.session.add_all([AuditEvent(at=now - timedelta(days=age), event=f"probe.{age}", data={})
                            for age in ages_in_days])
        db.session.commit()


def test_the_audit_purge_keeps_the_retention_period_refuses_a_date_inside_it_and_is_audited(
        any_app: Any, clock: Any) -> None:
    from idp import retention
    from idp.extensions import clock as app_clock

    _add_events(any_app, 800, 400, 366, 364, 10)
    with any_app.app_context():
        from idp.audit import AuditEvent
        from idp.extensions import db

        now = app_clock().now()
        db.session.add(AuditEvent(at=now - timedelta(days=700), event="audit.purged", data={"count": 1}))
        db.session.commit()  # the record of an old purge: kept for ever
        with pytest.raises(retention.WithinRetention):
            retention.purge_audit_events(now - timedelta(days=300))
        assert retention.purge_audit_events(now - timedelta(days=365), batch=2) == 3
        assert retention.purge_audit_events(now - timedelta(days=365)) == 0
    kept = {e.event for e in _events(any_app, "probe.364") + _events(any_app, "probe.10")}
    assert kept == {"probe.364", "probe.10"} and not _events(any_app, "probe.400")
    purges = _events(any_app, "audit.purged")
    assert [p.data["count"] for p in purges] == [1, 3, 0], "each purge is audited, and purges are never purged"
    assert len(_events(any_app, "audit.purge_started")) == 2, "a purge cut short would still leave its trace"


def _cli(app: Any, monkeypatch: Any, *args: str) -> Any:
    from idp.cli import main

    monkeypatch.setenv("IDP_DATABASE_URL", app.config["SQLALCHEMY_DATABASE_URI"])
    monkeypatch.setenv("IDP_SECRET_KEY", TEST_SECRET)
    return CliRunner().invoke(main, list(args))


def test_the_purge_commands_delete_what_expired_and_refuse_a_date_inside_the_retention_period(
        app: Any, monkeypatch: Any) -> None:
    """The commands run on the system clock: rows far in the past go, a --before within 365 days is refused
    (exit 2, nothing deleted)."""
    from idp.audit import AuditEvent
    from idp.extensions import db
    from idp.oidc.models import RefreshToken

    rp = make_rp(app)
    with app.app_context():
        db.session.add(AuditEvent(at=datetime(2020, 1, 1, tzinfo=UTC), event="probe.old", data={}))
        db.session.add(RefreshToken(token_hash="h" * 64, family_id="f" * 32, client_id=rp.client_id,
                                    account_id=make_person(app).account_id, scope="openid", auth={},
                                    issued_at=datetime(2020, 1, 1, tzinfo=UTC),
                                    expires_at=datetime(2020, 1, 31, tzinfo=UTC), revoked=False))
        db.session.commit()
    recent = (datetime.now(UTC) - timedelta(days=30)).date().isoformat()
    refused = _cli(app, monkeypatch, "audit", "purge", "--before", recent)
    assert refused.exit_code == 2 and "audit events are kept 365 days" in refused.output
    assert _events(app, "probe.old")
    assert _cli(app, monkeypatch, "audit", "purge", "--before", "hier").exit_code == 2
    with app.app_context():  # 12:00 UTC on 31 December: after 2021-01-01T00:00+14:00 (10:00 UTC that day)
        db.session.add(AuditEvent(at=datetime(2020, 12, 31, 12, tzinfo=UTC), event="probe.new-year", data={}))
        db.session.commit()
    offset = _cli(app, monkeypatch, "audit", "purge", "--before", "2021-01-01T00:00:00+14:00", "--json")
    assert offset.exit_code == 0 and json.loads(offset.output)["deleted"] == 1, "the offset is read as UTC"
    assert _events(app, "probe.new-year") and not _events(app, "probe.old")
    purged = _cli(app, monkeypatch, "audit", "purge", "--before", "2021-01-01", "--json")
    assert purged.exit_code == 0 and json.loads(purged.output) == {"deleted": 1, "before": "2021-01-01"}
    tokens = _cli(app, monkeypatch, "tokens", "purge", "--json")
    assert tokens.exit_code == 0 and json.loads(tokens.output) == {"deleted": 1}
    assert _refresh_rows(app) == 0 and not _events(app, "probe.old") and not _events(app, "probe.new-year")
