"""The identity registry (RFI, HTTP backend) down or slow: its own French message, nothing lost.

The registry is the accounts area's fake REST server (``tests/accounts/test_rfi_http.Registry``):
"down" points the IdP at a closed port, "slow" makes every answer wait past the read timeout.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.accounts.conftest import demo_records, make_account
from tests.accounts.test_rfi_http import Registry
from tests.conftest import csrf_from, free_port
from tests.oidc.conftest import flow, login, make_rp, redeem
from tests.resilience.conftest import text_of

REGISTRY_DOWN = "nous ne pouvons pas vérifier votre identité"
MARIE = demo_records()[0]



def _rfi_app(make_app: Any, url: str) -> Any:
    return make_app(rfi_backend="http", rfi_url=url + "/", rfi_read_timeout=0.3, rfi_connect_timeout=0.3,
                    rfi_retries=1, rfi_backoff=0.01)


def _create(client: Any) -> Any:
    token = csrf_from(client.get("/compte/creation").data)
    birth = MARIE["birthdate"].split("-")
    return client.post("/compte/creation", data={
        "csrf_token": token, "nir": MARIE["nir"], "birthdate": f"{birth[2]}/{birth[1]}/{birth[0]}",
        "vitale": MARIE["vitale_card_serial"], "iban_end": MARIE["iban"][-7:]})


@pytest.mark.parametrize("fault", ["down", "slow"])
def test_account_creation_says_the_registry_is_unavailable(make_app: Any, registry: Registry, fault: str) -> None:
    """Account creation (identity check against the RFI) while the registry is down or slow.

    Expected: a 503 French page with the registry's own message ("nous ne pouvons pas vérifier votre
    identité"), not the "informations erronées" of a mismatch, answered within the bounded timeouts
    (2 tries x 0.3 s here); once the registry answers again the same check succeeds (303 to the next step)."""
    url = f"http://127.0.0.1:{free_port()}" if fault == "down" else registry.url
    registry.mode = "slow"
    app = _rfi_app(make_app, url)
    client = app.test_client()
    started = time.monotonic()
    answer = _create(client)
    assert time.monotonic() - started < 3
    assert answer.status_code == 503 and REGISTRY_DOWN in text_of(answer), text_of(answer)[:300]
    assert "Traceback" not in text_of(answer)
    registry.mode = "ok"
    with app.app_context():
        app.extensions["idp.rfi"].base_url = registry.url  # the registry is reachable again
        app.extensions["idp.rfi"].breaker.reset_seconds = 0
    assert _create(client).status_code == 303


def test_userinfo_answers_503_json_while_the_registry_is_down_and_the_token_survives(make_app: Any,
                                                                                    registry: Registry) -> None:
    """userinfo needs the RFI identity (scope ``profile``); the registry answers 500.

    Expected: userinfo answers 503 JSON ``registry_unavailable`` with the registry's French description
    (no half-filled claims, no 500),
    and the same access token works once the registry is back: nothing was revoked or consumed."""
    app = _rfi_app(make_app, registry.url)
    account_id = make_account(app, MARIE["nir"])
    rp = make_rp(app, "web")
    client = app.test_client()
    f = flow(rp)
    from tests.oidc.conftest import Person

    person = Person(account_id, MARIE["nir"], "")
    tokens = redeem(client, rp, login(app, client, person, f)["code"], f).json
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    registry.mode = "500"
    down = client.get("/userinfo", headers=bearer)
    assert down.status_code == 503 and down.json["error"] == "registry_unavailable", down.data[:300]
    assert REGISTRY_DOWN in down.json["error_description"]
    registry.mode = "ok"
    with app.app_context():
        app.extensions["idp.rfi"].breaker.reset_seconds = 0
    back = client.get("/userinfo", headers=bearer)
    assert back.status_code == 200 and back.json["family_name"] == "DUPONT"
