"""Whether the biometric sign-in is offered is looked up once per login; revoking the credential still
stops the sign-in at once (only the offer is kept on the interaction, never the verification)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event

from idp.extensions import db
from idp.login import policy
from idp.login.interaction import Step, interactions
from idp.webauthn import service
from idp.webauthn.service import BiometricRefused
from tests.webauthn.conftest import make_account, make_interaction
from tests.webauthn.test_activation_level import _activate, _sign_in


@pytest.fixture
def credential_queries(ctx: Any) -> Any:
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "webauthn_credentials" in statement:
            seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", note)
    yield seen
    event.remove(db.engine, "before_cursor_execute", note)


def test_the_offer_is_looked_up_once_per_login_and_kept_on_the_interaction(ctx: Any, credential_queries: Any) -> None:
    account = make_account(login_count=1)
    _activate(account, ["pwd", "mail"])
    login = make_interaction(account=account, amr=["pwd"])
    credential_queries.clear()
    for _ in range(3):  # the steps of one login (POST identify, GET and POST of the step's page)
        assert policy.next_step(login, account) is Step.BIOMETRIC
        interactions.save(login)
        login = interactions.get(login.id)
        assert login is not None
    assert len(credential_queries) == 1
    login.restart(account.id)  # another identification: looked up again
    assert login.biometric_offered is None


def test_a_credential_revoked_during_the_login_is_still_offered_but_refused_at_sign_in(ctx: Any) -> None:
    account = make_account(login_count=1)
    credential = _activate(account, ["pwd", "mail"])
    login = make_interaction(account=account, amr=["pwd"])
    assert policy.next_step(login, account) is Step.BIOMETRIC
    assert service.revoke(account.id, credential.id)
    assert policy.next_step(login, account) is Step.BIOMETRIC  # the offer (the person may choose the code)
    with pytest.raises(BiometricRefused):
        _sign_in("web")
    fresh = make_interaction(account=account, amr=["pwd"])
    assert policy.next_step(fresh, account) is Step.CODE  # the next login no longer offers it
