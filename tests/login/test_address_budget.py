"""The per-address failure budget keys an IPv6 client on its /64 (one subscriber), IPv4 on the address.

Replays the attack over HTTP: 40 addresses of one /64 each try a wrong password; before, each address
had a fresh budget and none met the 429."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import csrf_from
from tests.login.conftest import UNKNOWN_NIR, bind, new_interaction

LIMIT = 30


@pytest.fixture
def app_config() -> dict[str, Any]:
    return {"address_failure_limit": LIMIT}


def _wrong_password_from(app: Any, address: str) -> int:
    client = app.test_client()
    bind(client, new_interaction(app))
    environ = {"REMOTE_ADDR": address}
    token = csrf_from(client.get("/connexion", environ_base=environ).data)
    answer = client.post("/connexion", environ_base=environ,
                         data={"csrf_token": token, "nir": UNKNOWN_NIR, "password": "Faux-Faux-1"})
    return answer.status_code


def test_forty_addresses_of_one_ipv6_64_share_one_budget_and_meet_the_429(app: Any) -> None:
    statuses = [_wrong_password_from(app, f"2001:db8:1:2:{i:x}::{i + 1:x}") for i in range(40)]
    assert statuses[:LIMIT] == [200] * LIMIT
    assert statuses[LIMIT:] == [429] * (40 - LIMIT)
    assert _wrong_password_from(app, "2001:db8:1:3::1") == 200  # the next /64 is another subscriber


def test_ipv4_addresses_keep_their_own_budget_and_a_mapped_ipv4_is_that_address(app: Any) -> None:
    for _ in range(LIMIT):
        assert _wrong_password_from(app, "198.51.100.7") == 200
    assert _wrong_password_from(app, "::ffff:198.51.100.7") == 429  # the same IPv4 client, IPv6-mapped
    assert _wrong_password_from(app, "198.51.100.8") == 200


@pytest.mark.parametrize(("address", "subject"), [
    ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
    ("2001:DB8:1:2::1", "2001:db8:1:2::/64"),
    ("203.0.113.9", "203.0.113.9"),
    ("::ffff:203.0.113.9", "203.0.113.9"),
    (None, "-"),
])
def test_the_budget_subject_of_an_address(address: str | None, subject: str) -> None:
    from idp.mfa.limits import client_network

    assert client_network(address) == subject
