"""One-time codes of the accounts area (:mod:`idp.accounts.codes`)."""

from __future__ import annotations

import pytest


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield app


def test_issuing_a_code_replaces_the_record_and_its_expiry_in_one_transaction(ctx, monkeypatch):
    from idp.accounts import codes
    from idp.extensions import redis_client

    client = redis_client()
    first = codes.issue("email", "acc-1", digits=6, ttl=600, bound_to="a@b.fr")
    transactions: list[bool] = []
    original = client.pipeline

    def pipeline(transaction=True, shard_hint=None):
        transactions.append(transaction)
        return original(transaction=transaction, shard_hint=shard_hint)

    def forbidden(*_a, **_k):
        raise AssertionError("written outside the transaction")

    monkeypatch.setattr(client, "pipeline", pipeline)
    for name in ("delete", "hset", "expire"):
        monkeypatch.setattr(client, name, forbidden)
    second = codes.issue("email", "acc-1", digits=6, ttl=600, bound_to="a@b.fr")
    monkeypatch.undo()

    assert transactions == [True]
    key = codes._key("email", "acc-1")
    assert 600 < client.ttl(key) <= 660 and client.hget(key, "tries") == b"0"
    if first != second:
        assert codes.verify("email", "acc-1", first, max_tries=3, bound_to="a@b.fr").outcome == "wrong"
    assert codes.verify("email", "acc-1", second, max_tries=3, bound_to="a@b.fr").ok
