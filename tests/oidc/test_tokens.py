"""Refresh tokens (rotation, family revocation, client binding, absolute life), revocation (RFC 7009),
introspection (RFC 7662) and client authentication methods."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.oidc.conftest import decode_id_token, flow, login, make_person, make_rp, redeem, token_request


def _tokens(app: Any, client: Any, person: Any, rp: Any) -> dict[str, Any]:
    f = flow(rp)
    response = redeem(client, rp, login(app, client, person, f)["code"], f)
    assert response.status_code == 200, response.json
    return dict(response.json)


def _refresh(client: Any, rp: Any, refresh_token: str) -> Any:
    return token_request(client, rp, {"grant_type": "refresh_token", "refresh_token": refresh_token})


def test_refresh_rotates_and_keeps_the_subject(app: Any, client: Any, person: Any, web_rp: Any) -> None:
    first = _tokens(app, client, person, web_rp)
    second = _refresh(client, web_rp, first["refresh_token"])
    assert second.status_code == 200
    assert second.json["refresh_token"] != first["refresh_token"]
    assert second.headers["Cache-Control"] == "no-store"
    old, new = decode_id_token(app, first["id_token"]), decode_id_token(app, second.json["id_token"])
    assert new["sub"] == old["sub"] and new["auth_time"] == old["auth_time"] and "nonce" not in new


def test_reused_refresh_token_revokes_the_family(app: Any, client: Any, person: Any, web_rp: Any) -> None:
    first = _tokens(app, client, person, web_rp)
    second = _refresh(client, web_rp, first["refresh_token"]).json
    assert _refresh(client, web_rp, first["refresh_token"]).json["error"] == "invalid_grant"
    assert _refresh(client, web_rp, second["refresh_token"]).json["error"] == "invalid_grant"
    assert client.get("/userinfo", headers={"Authorization": f"Bearer {second['access_token']}"}).status_code == 401


def test_refresh_token_of_another_client_is_invalid_grant(app: Any, client: Any, person: Any, web_rp: Any) -> None:
    first = _tokens(app, client, person, web_rp)
    thief = make_rp(app, "web")
    assert _refresh(client, thief, first["refresh_token"]).json["error"] == "invalid_grant"
    assert _refresh(client, web_rp, first["refresh_token"]).status_code == 200, "the owner is not punished"


def test_refresh_family_has_an_absolute_life(app: Any, client: Any, clock: Any, person: Any, web_rp: Any) -> None:
    tokens = _tokens(app, client, person, web_rp)
    for _ in range(3):
        clock.advance(days=9)
        tokens = _refresh(client, web_rp, tokens["refresh_token"]).json
        assert "refresh_token" in tokens
    clock.advance(days=4)  # 31 days after the login, although the last refresh was 4 days ago
    assert _refresh(client, web_rp, tokens["refresh_token"]).json["error"] == "invalid_grant"


def test_access_token_expires_by_the_clock(app: Any, client: Any, clock: Any, person: Any, web_rp: Any) -> None:
    tokens = _tokens(app, client, person, web_rp)
    clock.advance(601)
    assert client.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}).status_code == 401


@pytest.mark.parametrize("hint", [None, "access_token", "refresh_token"])
def test_revoking_a_refresh_token_ends_the_family(app: Any, client: Any, person: Any, web_rp: Any,
                                                  hint: str | None) -> None:
    tokens = _tokens(app, client, person, web_rp)
    data = {"token": tokens["refresh_token"], **({"token_type_hint": hint} if hint else {})}
    assert token_request(client, web_rp, data, "/revoke").status_code == 200
    assert _refresh(client, web_rp, tokens["refresh_token"]).json["error"] == "invalid_grant"
    assert client.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}).status_code == 401


def test_revoking_an_access_token(app: Any, client: Any, person: Any, web_rp: Any) -> None:
    tokens = _tokens(app, client, person, web_rp)
    assert token_request(client, web_rp, {"token": tokens["access_token"]}, "/revoke").status_code == 200
    assert client.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}).status_code == 401
    unknown = token_request(client, web_rp, {"token": "inconnu"}, "/revoke")
    assert unknown.status_code == 200, "RFC 7009 §2.2: unknown tokens are not an error"


def test_revocation_needs_client_authentication(app: Any, client: Any, person: Any, web_rp: Any) -> None:
    tokens = _tokens(app, client, person, web_rp)
    response = client.post("/revoke", data={"token": tokens["access_token"]}, auth=(web_rp.client_id, "faux" * 10))
    assert response.status_code == 401 and response.json["error"] == "invalid_client"


def test_introspection(app: Any, client: Any, person: Any, web_rp: Any) -> None:
    tokens = _tokens(app, client, person, web_rp)
    sub = decode_id_token(app, tokens["id_token"])["sub"]
    active = token_request(client, web_rp, {"token": tokens["access_token"]}, "/introspect").json
    assert active["active"] is True and active["sub"] == sub and active["client_id"] == web_rp.client_id
    refresh = token_request(client, web_rp, {"token": tokens["refresh_token"]}, "/introspect").json
    assert refresh["active"] is True and refresh["token_type"] == "refresh_token"
    other = make_rp(app, "web")
    assert token_request(client, other, {"token": tokens["access_token"]}, "/introspect").json == {"active": False}
    token_request(client, web_rp, {"token": tokens["access_token"]}, "/revoke")
    assert token_request(client, web_rp, {"token": tokens["access_token"]}, "/introspect").json == {"active": False}


def test_client_secret_post_and_wrong_method(app: Any, client: Any, person: Any) -> None:
    rp = make_rp(app, "web", auth_method="client_secret_post")
    tokens = _tokens(app, client, person, rp)
    assert "id_token" in tokens
    f = flow(rp)
    code = login(app, app.test_client(), person, f)["code"]
    basic = client.post("/token", auth=(rp.client_id, rp.secret), data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": f.params["redirect_uri"],
        "code_verifier": f.verifier})
    assert basic.json["error"] == "invalid_client"


def test_private_key_jwt(app: Any, client: Any, person: Any) -> None:
    import time

    from joserfc import jwt
    from joserfc.jwk import RSAKey

    key = RSAKey.generate_key(2048, parameters={"kid": "rp-key", "alg": "RS256", "use": "sig"})
    rp = make_rp(app, "web", auth_method="private_key_jwt", jwks={"keys": [key.as_dict(private=False)]})
    f = flow(rp)
    code = login(app, client, person, f)["code"]
    now = int(time.time())  # Authlib checks assertion times against the system clock
    assertion = jwt.encode({"alg": "RS256", "kid": "rp-key"}, {
        "iss": rp.client_id, "sub": rp.client_id, "aud": "http://localhost/token", "iat": now, "exp": now + 60,
        "jti": "unique-1"}, key)
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": f.params["redirect_uri"],
            "code_verifier": f.verifier, "client_id": rp.client_id,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion}
    response = client.post("/token", data=data)
    assert response.status_code == 200, response.json
    again = client.post("/token", data=data)
    assert again.json["error"] == "invalid_client", "an assertion is single use"


def test_deleted_account_cascades_its_refresh_tokens(any_app: Any) -> None:
    from sqlalchemy import func, select

    from idp.accounts.models import Account
    from idp.extensions import db
    from idp.oidc.models import RefreshToken

    client = any_app.test_client()
    person = make_person(any_app)
    rp = make_rp(any_app, "web")
    tokens = _tokens(any_app, client, person, rp)
    with any_app.app_context():
        assert db.session.scalar(select(func.count()).select_from(RefreshToken)) == 1
        db.session.delete(db.session.get(Account, person.account_id))
        db.session.commit()
        assert db.session.scalar(select(func.count()).select_from(RefreshToken)) == 0
    assert _refresh(client, rp, tokens["refresh_token"]).json["error"] == "invalid_grant"


@pytest.mark.postgres
def test_two_parallel_uses_of_a_refresh_token_one_wins_and_the_family_is_revoked(pg_app: Any) -> None:
    """The claiming UPDATE of the first use holds the row until it commits its successor; the second use
    waits for that lock, then finds the token rotated: a reuse, which revokes the family (successor too)."""
    import threading

    from sqlalchemy import select

    from idp.extensions import db
    from idp.oidc import tokens
    from idp.oidc.clients import get_client
    from idp.oidc.models import RefreshToken

    client = pg_app.test_client()
    person, rp = make_person(pg_app), make_rp(pg_app, "web")
    first = _tokens(pg_app, client, person, rp)["refresh_token"]
    second_result: list[Any] = []
    claimed = threading.Event()

    def second_use() -> None:
        claimed.wait(10)
        second_result.append(_refresh(pg_app.test_client(), rp, first))

    other = threading.Thread(target=second_use)
    other.start()
    with pg_app.app_context():
        winner = tokens.claim_refresh_token(first, rp.client_id)
        assert winner is not None and winner.account_status == "active"
        claimed.set()
        other.join(0.5)
        assert other.is_alive(), "the second use must wait for the first one's row lock"
        user = tokens.EndUser(**winner.auth)
        tokens.insert_refresh_token("successor-value-1234", client=get_client(rp.client_id), scope=winner.scope,
                                    user=user, family=winner, lifetime=3600)
        db.session.commit()
    other.join(10)
    assert second_result[0].json["error"] == "invalid_grant"
    with pg_app.app_context():
        family = db.session.scalars(select(RefreshToken).where(RefreshToken.family_id == winner.family_id)).all()
        assert len(family) == 2 and all(r.revoked for r in family), "reuse revokes the family, successor included"


@pytest.mark.postgres
def test_a_reuse_during_a_rotation_revokes_the_successor_that_rotation_commits(pg_app: Any) -> None:
    """Attack: an old, rotated refresh token of the family is presented (a reuse: the family must go) while
    another request is rotating the family's current token (its successor inserted, not committed yet). The
    reuse's revocation waits for that rotation and revokes its successor too, instead of revoking the rows it
    could see and leaving the new token alive."""
    import threading

    from sqlalchemy import select

    from idp.extensions import db
    from idp.oidc import tokens
    from idp.oidc.models import RefreshToken

    client = pg_app.test_client()
    person, rp = make_person(pg_app), make_rp(pg_app, "web")
    old = _tokens(pg_app, client, person, rp)["refresh_token"]
    current = _refresh(client, rp, old).json["refresh_token"]  # `old` is now rotated
    reuse: list[Any] = []
    reusing = threading.Thread(target=lambda: reuse.append(_refresh(pg_app.test_client(), rp, old)))
    with pg_app.app_context():
        claimed = tokens.claim_refresh_token(current, rp.client_id, successor="successor-value-5678", scope=None)
        assert claimed is not None  # the rotation holds `current` and its uncommitted successor
        reusing.start()
        reusing.join(0.5)
        assert reusing.is_alive(), "the reuse's revocation waits for the rotation in flight"
        db.session.commit()
    reusing.join(10)
    assert reuse[0].status_code == 400 and reuse[0].json["error"] == "invalid_grant"
    with pg_app.app_context():
        family = db.session.scalars(select(RefreshToken).where(RefreshToken.family_id == claimed.family_id)).all()
        assert len(family) == 3
        assert all(r.revoked for r in family), "the successor committed during the reuse is revoked too"


@pytest.mark.postgres
def test_parallel_reuses_of_a_rotated_token_revoke_the_family_without_a_deadlock(pg_app: Any,
                                                                               monkeypatch: Any) -> None:
    """Found by the load test in CI (a 503 among the refresh races): a use that waited for the winning rotation
    keeps a row lock on the token though its claim failed; if it then waited for the family's advisory lock
    while another loser held that lock and waited for the row, PostgreSQL killed one of them as a deadlock.
    Interleaved here: X's claim waits for the winner, Y comes after the winner's commit and starts revoking
    the family, then X goes on to revoke it too. Both are invalid_grant, the family is revoked."""
    import threading

    from sqlalchemy import select

    from idp.extensions import db
    from idp.oidc import tokens
    from idp.oidc.models import RefreshToken

    client = pg_app.test_client()
    person, rp = make_person(pg_app), make_rp(pg_app, "web")
    token = _tokens(pg_app, client, person, rp)["refresh_token"]
    answers: dict[str, Any] = {}
    y_revoking = threading.Event()
    real = tokens.reused_family

    def reused_family(value: str, client_id: str) -> Any:
        if threading.current_thread().name == "X":
            y_revoking.wait(5)  # X holds what its claim locked while Y revokes
        return real(value, client_id)

    def use(name: str) -> None:
        answers[name] = _refresh(pg_app.test_client(), rp, token)

    monkeypatch.setattr(tokens, "reused_family", reused_family)
    x = threading.Thread(target=use, args=("X",), name="X")
    with pg_app.app_context():
        winner = tokens.claim_refresh_token(token, rp.client_id, successor="successor-value-9012", scope=None)
        assert winner is not None
        x.start()
        x.join(0.5)  # X's claim waits for the winner's row lock
        db.session.commit()
    time.sleep(0.3)  # X's claim failed after the commit; X now waits in reused_family
    y = threading.Thread(target=use, args=("Y",), name="Y")
    y.start()
    y.join(0.5)  # Y's revocation runs (and, before the fix, waited for X's row)
    y_revoking.set()
    x.join(15)
    y.join(15)
    assert {name: answer.status_code for name, answer in answers.items()} == {"X": 400, "Y": 400}, \
        {name: answer.get_data(as_text=True)[:100] for name, answer in answers.items()}
    with pg_app.app_context():
        family = db.session.scalars(select(RefreshToken).where(RefreshToken.family_id == winner.family_id)).all()
        assert len(family) == 2 and all(r.revoked for r in family)


@pytest.mark.postgres
def test_a_family_rotated_past_the_drivers_parameter_limit_is_still_revoked_by_a_reuse(pg_app: Any) -> None:
    """Attack (review): a stolen refresh token rotated 65,535 times, /token having no rotation cap. The reuse of
    the victim's rotated token must still revoke the family: the revocation updates it by family, not by a
    list of ids (psycopg refuses more than 65,535 parameters: it answered 503 and the family survived)."""
    from sqlalchemy import func, insert, select

    from idp.extensions import db
    from idp.oidc import tokens
    from idp.oidc.models import RefreshToken

    person, rp = make_person(pg_app), make_rp(pg_app, "web")
    client = pg_app.test_client()
    victims = _tokens(pg_app, client, person, rp)["refresh_token"]
    attackers = _refresh(client, rp, victims).json["refresh_token"]  # the thief's head of the family
    with pg_app.app_context():  # the thief's further rotations, as rows
        row = db.session.scalars(select(RefreshToken).where(
            RefreshToken.token_hash == tokens.hash_token(victims))).one()
        db.session.execute(insert(RefreshToken), [
            {"token_hash": f"{i:064x}", "family_id": row.family_id, "client_id": row.client_id,
             "account_id": row.account_id, "scope": row.scope, "auth": row.auth, "issued_at": row.issued_at,
             "expires_at": row.expires_at, "rotated_at": row.issued_at, "revoked": False} for i in range(65_535)])
        family_id = row.family_id
        db.session.commit()
    reuse = _refresh(pg_app.test_client(), rp, victims)
    assert reuse.status_code == 400 and reuse.json["error"] == "invalid_grant"
    assert _refresh(pg_app.test_client(), rp, attackers).json["error"] == "invalid_grant"
    with pg_app.app_context():
        alive = db.session.scalar(select(func.count()).select_from(RefreshToken).where(
            RefreshToken.family_id == family_id, RefreshToken.revoked.is_(False)))
        assert alive == 0


def test_client_records_are_cached_briefly_and_orm_changes_are_seen_at_once(app: Any, clock: Any) -> None:
    from sqlalchemy import update

    from idp.extensions import db
    from idp.oidc import clients
    from idp.oidc.models import Client

    rp = make_rp(app, "web")
    with app.app_context():
        first = clients.get_client(rp.client_id)
        assert first is not None and first.check_client_secret(rp.secret)
        first.redirect_uris.append("https://attacker.example/cb")  # a copy: the cache is not changed
        assert "https://attacker.example/cb" not in clients.get_client(rp.client_id).redirect_uris
        stored = db.session.get(Client, rp.client_id)
        stored.name = "Renamed"
        db.session.commit()  # through the ORM in this process: seen at once
        assert clients.get_client(rp.client_id).name == "Renamed"
        db.session.execute(update(Client).where(Client.client_id == rp.client_id).values(client_secret_hash="x" * 64))
        db.session.commit()  # as another worker would (no ORM event here): within the cache time
        cache = clients._client_cache()
        read_at, values = cache[rp.client_id]
        cache[rp.client_id] = (read_at - clients.CLIENT_CACHE_SECONDS, values)  # the cache time has passed
        assert not clients.get_client(rp.client_id).check_client_secret(rp.secret)
        db.session.delete(db.session.get(Client, rp.client_id))
        db.session.commit()
        assert clients.get_client(rp.client_id) is None


def test_client_cache_is_cleared_again_when_the_transaction_that_changed_the_client_ends(app: Any) -> None:
    """Between the flush and the commit another thread may cache the old row (or this session its own
    uncommitted one): the cache is cleared after the commit, and after a rollback."""
    import time

    from idp.extensions import db
    from idp.oidc import clients
    from idp.oidc.models import Client

    rp = make_rp(app, "web")
    with app.app_context():
        old = {k: v for k, v in clients.get_client(rp.client_id).__dict__.items() if k in clients._COLUMNS}
        db.session.get(Client, rp.client_id).name = "Renamed"
        db.session.flush()
        clients._client_cache()[rp.client_id] = (time.monotonic(), old)  # another thread re-caches the old row
        db.session.commit()
        assert clients.get_client(rp.client_id).name == "Renamed"
        db.session.get(Client, rp.client_id).name = "Never committed"
        db.session.flush()
        assert clients.get_client(rp.client_id).name == "Never committed"  # this session sees its own flush
        db.session.rollback()
        assert clients.get_client(rp.client_id).name == "Renamed"


def test_a_refresh_whose_id_token_cannot_be_built_leaves_the_old_refresh_token_usable(
        any_app: Any, monkeypatch: Any) -> None:
    """The rotation is committed only once the whole response (ID token claims from the RFI included) is
    built: the RFI down at that moment gives a 503, and the client's retry with the same token succeeds
    (no false reuse that would revoke the family)."""
    import json

    from idp.oidc import claims
    from idp.rfi_adapter.base import RegistryUnavailable

    person, rp = make_person(any_app), make_rp(any_app, "web")
    client = any_app.test_client()
    f = flow(rp, claims=json.dumps({"id_token": {"given_name": None}}))
    issued = redeem(client, rp, login(any_app, client, person, f)["code"], f).json

    def rfi_down(*_args: Any, **_kwargs: Any) -> Any:
        raise RegistryUnavailable(detail="RFI down (test)")

    with monkeypatch.context() as patch:
        patch.setattr(claims, "identity_claims", rfi_down)
        failed = token_request(client, rp, {"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]})
        assert failed.status_code == 503
    retry = token_request(client, rp, {"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]})
    assert retry.status_code == 200, retry.json
    assert client.get("/userinfo", headers={"Authorization": f"Bearer {retry.json['access_token']}"}).status_code == 200


def test_a_code_exchange_stopped_by_an_outage_gives_the_code_back_and_withdraws_its_access_token(
        app: Any, client: Any, person: Any, web_rp: Any, monkeypatch: Any) -> None:
    """The database fails after the code was taken and the access token stored: the RP gets a 503, the access
    token prepared for it is withdrawn, and the same code works once the database is back."""
    import sqlalchemy.exc

    from idp.oidc import tokens

    f = flow(web_rp)
    code = login(app, client, person, f)["code"]
    stored: list[str] = []
    real_store = tokens.store_access_token

    def store_then_fail(access_token: str, **kwargs: Any) -> None:
        real_store(access_token, **kwargs)
        stored.append(access_token)
        raise sqlalchemy.exc.OperationalError("INSERT", {}, Exception("database went away"))

    monkeypatch.setattr(tokens, "store_access_token", store_then_fail)
    down = redeem(client, web_rp, code, f)
    assert down.status_code == 503 and down.json["error"] == "temporarily_unavailable"
    monkeypatch.setattr(tokens, "store_access_token", real_store)
    assert client.get("/userinfo", headers={"Authorization": f"Bearer {stored[0]}"}).status_code == 401

    back = redeem(client, web_rp, code, f)
    assert back.status_code == 200 and back.json["access_token"] != stored[0]


def test_a_replayed_code_is_not_given_back(app: Any, client: Any, person: Any, web_rp: Any) -> None:
    """Once the owning client replayed a code, giving it back after a failure is refused: the replay stands."""
    from idp.oidc import tokens

    f = flow(web_rp)
    code = login(app, client, person, f)["code"]
    with app.app_context():
        record = tokens.redeem_code(code, web_rp.client_id)
        assert record is not None
        assert tokens.redeem_code(code, web_rp.client_id) is None  # the replay flags the code
        assert tokens.give_back_code(code, record) is False
        assert tokens.redeem_code(code, web_rp.client_id) is None


def test_rotation_claim_and_successor_in_one_statement_keep_every_rule(any_app: Any, clock: Any) -> None:
    """On PostgreSQL the claim and the successor are one statement (elsewhere two): the successor carries the
    requested (narrower) scope, else its predecessor's, the family's auth and absolute expiry; a refusal after
    the claim (absolute life) leaves neither a rotation nor a successor; a replay still revokes the family."""
    from sqlalchemy import select

    from idp.extensions import db
    from idp.oidc.models import RefreshToken

    client, person, rp = any_app.test_client(), make_person(any_app), make_rp(any_app, "web")

    def family(family_id: str | None = None) -> list[RefreshToken]:
        with any_app.app_context():
            query = select(RefreshToken).order_by(RefreshToken.id)
            rows = list(db.session.scalars(query.where(RefreshToken.family_id == family_id) if family_id else query))
            db.session.expunge_all()
            return rows

    first = _tokens(any_app, client, person, rp)
    [issued] = family()
    narrowed = token_request(client, rp, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"],
                                          "scope": "openid"})
    assert narrowed.status_code == 200 and narrowed.json["scope"] == "openid", narrowed.json
    kept = _refresh(client, rp, narrowed.json["refresh_token"])
    assert kept.status_code == 200 and kept.json["scope"] == "openid", kept.json
    rows = family(issued.family_id)
    assert len(rows) == 3 and [r.scope for r in rows] == [issued.scope, "openid", "openid"]
    assert all(r.auth == issued.auth and r.expires_at == issued.expires_at and r.client_id == rp.client_id
               for r in rows)
    assert [r.rotated_at is not None for r in rows] == [True, True, False] and not any(r.revoked for r in rows)

    assert _refresh(client, rp, first["refresh_token"]).json["error"] == "invalid_grant"  # a replay
    assert all(r.revoked for r in family(issued.family_id)), "the whole family, last successor included"
    assert _refresh(client, rp, kept.json["refresh_token"]).json["error"] == "invalid_grant"

    later = _tokens(any_app, any_app.test_client(), person, rp)
    clock.advance(days=31)  # past the family's absolute life
    before = len(family())
    assert _refresh(client, rp, later["refresh_token"]).json["error"] == "invalid_grant"
    rows = family()
    assert len(rows) == before and rows[-1].rotated_at is None, "the refused claim and its successor rolled back"
