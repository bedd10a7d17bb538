"""Userinfo (OIDC Core §5.3): GET and POST, header and form body, FranceConnect formats, signed and
encrypted answers."""

from __future__ import annotations

from typing import Any

import pytest

from tests.oidc.conftest import decode_id_token, flow, login, make_rp, redeem


def _access(app: Any, client: Any, person: Any, rp: Any, scope: str = "openid profile email birth") -> tuple[str, str]:
    f = flow(rp, scope=scope)
    tokens = redeem(client, rp, login(app, client, person, f)["code"], f).json
    return tokens["access_token"], decode_id_token(app, tokens["id_token"])["sub"]


@pytest.mark.parametrize("how", ["get-header", "post-header", "post-form"])
def test_userinfo_answers_get_and_post_with_header_or_form_token(app: Any, client: Any, person: Any,
                                                                  web_rp: Any, how: str) -> None:
    token, sub = _access(app, client, person, web_rp)
    if how == "get-header":
        response = client.get("/userinfo", headers={"Authorization": f"Bearer {token}"})
    elif how == "post-header":
        response = client.post("/userinfo", headers={"Authorization": f"Bearer {token}"})
    else:
        response = client.post("/userinfo", data={"access_token": token})
    assert response.status_code == 200
    assert response.json["sub"] == sub


def test_userinfo_claims_use_franceconnect_formats(app: Any, client: Any, person: Any, web_rp: Any) -> None:
    token, sub = _access(app, client, person, web_rp, "openid profile email birth identite_pivot")
    info = client.get("/userinfo", headers={"Authorization": f"Bearer {token}"}).json
    assert info == {"sub": sub, "given_name": "Marie Claire", "family_name": "DUPONT",
                    "preferred_username": "MOREAU", "birthdate": "1985-03-12", "gender": "female",
                    "birthplace": "69383", "birthcountry": "99100", "email": "marie.dupont@example.org",
                    "email_verified": True}
    assert "285036938304242" not in str(info)


def test_userinfo_only_gives_the_granted_scopes(app: Any, client: Any, person: Any, web_rp: Any) -> None:
    token, sub = _access(app, client, person, web_rp, "openid email")
    info = client.get("/userinfo", headers={"Authorization": f"Bearer {token}"}).json
    assert info == {"sub": sub, "email": "marie.dupont@example.org", "email_verified": True}


@pytest.mark.parametrize("header", [None, "Bearer inconnu", "Basic eDp5"])
def test_userinfo_refuses_missing_or_bad_tokens(client: Any, header: str | None) -> None:
    response = client.get("/userinfo", headers={"Authorization": header} if header else {})
    assert response.status_code in (400, 401)
    assert response.json["error"] in ("invalid_token", "missing_authorization", "unsupported_token_type")


def test_signed_userinfo(app: Any, client: Any, person: Any) -> None:
    from joserfc import jws, jwt

    from idp.oidc.keys import public_keyset

    rp = make_rp(app, "web", userinfo_signed_response_alg="ES256")
    token, sub = _access(app, client, person, rp)
    response = client.get("/userinfo", headers={"Authorization": f"Bearer {token}"})
    assert response.mimetype == "application/jwt"
    header = jws.extract_compact(response.data).headers()
    assert header["alg"] == "ES256" and header["kid"]
    with app.app_context():
        claims = jwt.decode(response.data, public_keyset()).claims
    assert claims["sub"] == sub and claims["iss"] == "http://localhost" and claims["aud"] == rp.client_id


@pytest.mark.parametrize(("alg", "kty"), [("RSA-OAEP-256", "RSA"), ("ECDH-ES", "EC")])
def test_signed_and_encrypted_userinfo_for_franceconnect_plus(app: Any, client: Any, person: Any,
                                                              alg: str, kty: str) -> None:
    from joserfc import jwe, jwt
    from joserfc.jwk import ECKey, KeySet, RSAKey

    from idp.oidc.keys import public_keyset

    key = RSAKey.generate_key(2048, parameters={"kid": "enc", "use": "enc"}) if kty == "RSA" else \
        ECKey.generate_key("P-256", parameters={"kid": "enc", "use": "enc"})
    rp = make_rp(app, "federation", userinfo_signed_response_alg="RS256", userinfo_encrypted_response_alg=alg,
                 userinfo_encrypted_response_enc="A256GCM", jwks={"keys": [key.as_dict(private=False)]})
    token, sub = _access(app, client, person, rp)
    response = client.get("/userinfo", headers={"Authorization": f"Bearer {token}"})
    assert response.mimetype == "application/jwt"
    decrypted = jwe.decrypt_compact(response.data, KeySet([key]), algorithms=[alg, "A256GCM"])
    assert decrypted.headers()["enc"] == "A256GCM"
    with app.app_context():
        claims = jwt.decode(decrypted.plaintext, public_keyset()).claims
    assert claims["sub"] == sub and claims["birthdate"] == "1985-03-12"


def test_userinfo_reads_the_account_with_one_core_query_and_sees_a_change_at_once(app: Any, client: Any,
                                                                                  person: Any, web_rp: Any) -> None:
    """The claims are read by one Core statement (no ORM instance kept), so an e-mail changed a moment ago
    (here by SQL, as an operator would) is what the next userinfo answers."""
    from sqlalchemy import event, text

    from idp.extensions import db

    token, _sub = _access(app, client, person, web_rp, "openid email")
    with app.app_context():
        db.session.execute(text("UPDATE accounts SET email = 'nouvelle@example.org' WHERE id = :id"),
                           {"id": person.account_id})
        db.session.commit()
        seen: list[str] = []

        def _count(*args: Any) -> None:
            seen.append(str(args[2]))

        event.listen(db.engine, "before_cursor_execute", _count)
        try:
            info = client.get("/userinfo", headers={"Authorization": f"Bearer {token}"}).json
        finally:
            event.remove(db.engine, "before_cursor_execute", _count)
    assert info["email"] == "nouvelle@example.org"
    account_reads = [s for s in seen if "FROM accounts" in s]
    assert len(account_reads) == 1 and "password_hash" not in account_reads[0], seen


@pytest.mark.postgres
def test_userinfo_reads_in_autocommit_and_gives_the_connection_back_in_its_default_isolation(pg_app: Any) -> None:
    """Userinfo only reads: no BEGIN/ROLLBACK round trips; the pooled connection is not left in autocommit
    for the next request (which may write). PostgreSQL only (SQLite has no round trips to save: it reads in a
    transaction). The account and registry reads run on the driver's cursor (idp.driver_sql), out of
    SQLAlchemy's sight: their connections' autocommit is recorded there."""
    from sqlalchemy import event

    from idp import driver_sql
    from idp.extensions import db
    from tests.oidc.conftest import make_person, make_rp

    person, rp = make_person(pg_app), make_rp(pg_app)
    client = pg_app.test_client()
    token, sub = _access(pg_app, client, person, rp, "openid profile email")
    levels: list[str] = []
    handed_back: list[str] = []
    with pg_app.app_context():
        engine = db.engine

    def _executed(conn: Any, *_args: Any) -> None:
        levels.append(conn.get_execution_options().get("isolation_level", "default"))

    def _checked_in(dbapi_connection: Any, _record: Any) -> None:
        handed_back.append(str(getattr(dbapi_connection, "autocommit", getattr(dbapi_connection, "isolation_level", ""))))

    on_cursor = driver_sql._first_on_cursor

    def _on_driver(cursor: Any, *args: Any) -> Any:
        levels.append("AUTOCOMMIT" if cursor.connection.autocommit else "default")
        return on_cursor(cursor, *args)

    event.listen(engine, "before_cursor_execute", _executed)
    event.listen(engine, "checkin", _checked_in)
    driver_sql._first_on_cursor = _on_driver
    try:
        info = client.get("/userinfo", headers={"Authorization": f"Bearer {token}"}).json
    finally:
        driver_sql._first_on_cursor = on_cursor
        event.remove(engine, "before_cursor_execute", _executed)
        event.remove(engine, "checkin", _checked_in)
    assert info["sub"] == sub and info["given_name"] == "Marie Claire"
    assert len(levels) == 2 and set(levels) == {"AUTOCOMMIT"}, levels  # the account, the registry record
    assert handed_back and handed_back[-1] not in ("True", "None"), handed_back
    with pg_app.app_context():  # the next use of the pool writes in a transaction again
        assert not db.session.connection().get_execution_options().get("isolation_level")
