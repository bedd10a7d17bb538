"""The demo step loads the registry and the demo accounts once."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from idp.accounts import service
from idp.accounts.demo import DEMO_PASSWORD, load_demo
from idp.accounts.models import Account
from idp.demo import DEMO_STEPS
from idp.extensions import db
from idp.rfi_adapter.sql import count_records
from tests.accounts.conftest import by_name
from tests.conftest import remember_secret

remember_secret(DEMO_PASSWORD)


def test_demo_step_is_registered_once_and_is_idempotent(app: Any, records: list[dict[str, Any]]) -> None:
    assert [name for name, _ in DEMO_STEPS].count("accounts") == 1
    load_demo(app)
    load_demo(app)
    with app.app_context():
        assert count_records() == len(records)
        assert db.session.scalar(select(func.count()).select_from(Account)) == 5
        assert service.find_account(by_name(records, "BERNARD")["nir"]) is None  # for "Créer mon compte"
        jean = service.authenticate(by_name(records, "MARTIN")["nir"], DEMO_PASSWORD)
        assert jean is not None and not jean.email_validated
        marie = service.authenticate(by_name(records, "DUPONT")["nir"], DEMO_PASSWORD)
        assert marie is not None and marie.email_validated and marie.phone == "+33612345601"
