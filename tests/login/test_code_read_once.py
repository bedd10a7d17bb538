"""The code check reads the waiting code once (before the guess is reserved) and decides on that record:
a code replaced or consumed in between is no success, one that expired in between is expired."""

from __future__ import annotations

from typing import Any

from idp.accounts import service as accounts
from idp.mfa import codes
from tests.conftest import remember_secret
from tests.login.conftest import make_account


def _sent(app: Any, mailbox: Any, tx: str, account_id: str) -> str:
    account = accounts.get_account(account_id)
    assert account is not None
    codes.send_code(tx, account)
    code = mailbox.code()
    remember_secret(code)
    return code


def test_a_code_replaced_after_it_was_read_is_not_a_success(app: Any, mailbox: Any) -> None:
    person = make_account(app)
    with app.test_request_context("/"):
        first = _sent(app, mailbox, "tx-1", person.account_id)
        seen = codes.look("tx-1", person.account_id)
        assert seen.state is None
        _sent(app, mailbox, "tx-1", person.account_id)  # a new code replaces it meanwhile
        assert codes.verify_code("tx-1", person.account_id, first, seen=seen) is codes.CodeCheck.MISSING


def test_a_code_consumed_after_it_was_read_is_not_a_second_success(app: Any, mailbox: Any) -> None:
    person = make_account(app)
    with app.test_request_context("/"):
        code = _sent(app, mailbox, "tx-2", person.account_id)
        seen = codes.look("tx-2", person.account_id)
        assert codes.verify_code("tx-2", person.account_id, code) is codes.CodeCheck.OK  # the parallel submit
        assert codes.verify_code("tx-2", person.account_id, code, seen=seen) is codes.CodeCheck.MISSING


def test_a_code_that_expired_after_it_was_read_is_expired(app: Any, mailbox: Any, clock: Any) -> None:
    person = make_account(app)
    with app.test_request_context("/"):
        code = _sent(app, mailbox, "tx-3", person.account_id)
        seen = codes.look("tx-3", person.account_id)
        clock.advance(minutes=16)
        assert codes.verify_code("tx-3", person.account_id, code, seen=seen) is codes.CodeCheck.EXPIRED
