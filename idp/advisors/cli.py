"""``idp advisors create --email E --role advisor|supervisor`` (DESIGN.md §6), ``idp advisors list`` and
``idp advisors disable|enable --email E``.

``create`` prints the one-time enrolment link (the token is shown once; only its hash is stored). ``disable`` cuts
off a leaving or compromised advisor: their console sessions end at once and every sign-in refuses them, until
``enable``. Errors exit 1 (with ``{"error": ..., "message": ...}`` under ``--json``).
"""

from __future__ import annotations

import sys

import click

from idp.cli import emit, json_option, with_app


@click.group("advisors")
def advisors_group() -> None:
    """Staff accounts of the advisors' console (/conseiller/)."""


@advisors_group.command("create")
@click.option("--email", required=True, help="The advisor's professional e-mail address.")
@click.option("--role", type=click.Choice(["advisor", "supervisor"]), default="advisor", show_default=True)
@json_option
@with_app
def create(email: str, role: str, as_json: bool) -> None:
    """Create an advisor (or renew the link of one not enrolled yet) and print the one-time enrolment link."""
    from idp.advisors import service
    from idp.errors import BadRequest
    from idp.extensions import settings

    try:
        advisor, token = service.create_advisor(email, role)
    except BadRequest as exc:
        emit({"error": exc.code, "message": exc.description}, as_json, f"Error: {exc.description}")
        sys.exit(1)
    s = settings()
    link = f"{s.issuer}/conseiller/inscription/{token}"
    hours = s.advisor_enrolment_ttl // 3600
    data = {"id": advisor.id, "email": advisor.email, "role": advisor.role, "enrolment_link": link,
            "expires_in": s.advisor_enrolment_ttl}
    emit(data, as_json, f"Advisor {advisor.email} ({advisor.role}) created.\n"
                        f"One-time enrolment link (valid {hours} h, give it to the advisor only):\n{link}")


@advisors_group.command("list")
@json_option
@with_app
def list_advisors(as_json: bool) -> None:
    """List the advisors (e-mail, role, enrolled, last sign-in)."""
    from sqlalchemy import select

    from idp.advisors.models import Advisor
    from idp.extensions import db

    rows = [{"id": a.id, "email": a.email, "role": a.role, "source": a.source,
             "enrolled": a.enrolled_at is not None, "last_sign_in_at": a.last_sign_in_at,
             "disabled": a.disabled_at is not None, "disabled_at": a.disabled_at}
            for a in db.session.scalars(select(Advisor).order_by(Advisor.email))]
    emit(rows, as_json, "\n".join(f"{r['email']}  {r['role']}  enrolled={r['enrolled']}"
                                  f"{'  DISABLED' if r['disabled'] else ''}" for r in rows) or "none")


def _set_disabled(email: str, disabled: bool, as_json: bool) -> None:
    from idp.advisors import service

    try:
        advisor, ended = service.set_disabled(email, disabled)
    except service.AdvisorUnknown as exc:
        emit({"error": exc.code, "message": exc.description}, as_json, f"Error: {exc.description}")
        sys.exit(1)
    data = {"id": advisor.id, "email": advisor.email, "disabled": advisor.disabled_at is not None,
            "disabled_at": advisor.disabled_at, "sessions_ended": ended}
    emit(data, as_json, f"Advisor {advisor.email} disabled: {ended} console session(s) ended, sign-in refused."
         if disabled else f"Advisor {advisor.email} enabled: they may sign in again.")


def _state_command(name: str, disabled: bool, help_text: str) -> None:
    @advisors_group.command(name, help=help_text)
    @click.option("--email", required=True, help="The advisor's e-mail address.")
    @json_option
    @with_app
    def command(email: str, as_json: bool) -> None:
        _set_disabled(email, disabled, as_json)


_state_command("disable", True, "Cut an advisor off: end their console sessions at once and refuse their sign-in "
                                "(audited).")
_state_command("enable", False, "Let a disabled advisor sign in again (audited).")
