"""Subject identifiers and claims (OIDC Core §5, §8; FranceConnect pivot identity formats).

Scopes map to claims as FranceConnect expects them: ``profile`` -> given_name (all first names),
family_name (birth name), preferred_username (usage name); ``email`` -> email, email_verified;
``birth`` -> birthdate, birthplace, birthcountry; ``identite_pivot`` -> the pivot identity (given_name,
family_name, birthdate, gender, birthplace, birthcountry); FranceConnect's one-claim scopes
(``given_name``, ``family_name``, ``birthdate``, ``gender``, ``birthplace``, ``birthcountry``,
``preferred_username``) give that claim. Identities come from the RFI; the NIR
is only used to look the identity up and never leaves this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, bindparam, select
from sqlalchemy.orm.util import identity_key
from sqlalchemy.sql import Select

from idp.crypto import decrypt, lookup_hmac
from idp.driver_sql import first_without_transaction
from idp.extensions import db
from idp.oidc.models import Client

if TYPE_CHECKING:
    from idp.oidc.tokens import EndUser

SCOPE_CLAIMS: dict[str, tuple[str, ...]] = {
    "profile": ("given_name", "family_name", "preferred_username", "gender", "birthdate"),
    "email": ("email", "email_verified"),
    "birth": ("birthdate", "birthplace", "birthcountry"),
    "identite_pivot": ("given_name", "family_name", "birthdate", "gender", "birthplace", "birthcountry"),
    # FranceConnect's one-claim scopes (what FC and FC+ ask an identity provider for).
    **{name: (name,) for name in ("given_name", "family_name", "birthdate", "gender", "birthplace", "birthcountry",
                                  "preferred_username")},
}
SUPPORTED_CLAIMS = sorted({"sub", *(c for claims in SCOPE_CLAIMS.values() for c in claims)})


def subject(client: Client, account_id: str) -> str:
    """``sub`` for this client: pairwise (OIDC Core §8.1, keyed hash of sector + account) or public."""
    if client.subject_type == "public":
        return account_id
    return lookup_hmac(f"{client.sector}|{account_id}", purpose="pairwise")


def scope_claims(scope: str) -> set[str]:
    """The claims the scopes of ``scope`` give."""
    return {claim for name in scope.split() for claim in SCOPE_CLAIMS.get(name, ())}


def requested_claims(scope: str, claims_request: dict[str, Any] | None, member: str, client: Client) -> set[str]:
    """Claim names asked for by the scopes (userinfo only) and by the ``claims`` parameter member.

    The ``claims`` parameter can only narrow what the grant gives: a claim outside the scopes granted in
    this request (``scope``), or outside those the client is registered for, is ignored (it would
    otherwise reach, e.g., the pivot identity without the ``identite_pivot`` scope being granted)."""
    names: set[str] = scope_claims(scope) if member == "userinfo" else set()
    wanted = (claims_request or {}).get(member) or {}
    if isinstance(wanted, dict):
        allowed = scope_claims(scope) & scope_claims(client.scope or "")
        names.update(n for n in wanted if n in SUPPORTED_CLAIMS and n in allowed)
    return names


class AccountNotUsable(Exception):
    """Userinfo for an account that may no longer use its tokens: disabled, or the token comes from a login
    older than the account's cut-off (a grant in flight across a disabling or a password change)."""


@dataclass(frozen=True, slots=True)
class _AccountRow:
    email: str | None
    email_validated: bool
    nir_enc: str
    status: str
    cutoff: datetime | None


@cache
def _account_statement() -> Select[Any]:
    """The columns claims need of an account, with its status and cut-off, as one Core statement built once
    (no ORM instance)."""
    from idp.accounts.models import Account, grants_cutoff_column

    table = Account.__table__
    assert isinstance(table, Table)
    return select(table.c.email, table.c.email_validated, table.c.nir_enc, table.c.status,
                  grants_cutoff_column(table).label("cutoff")).where(table.c.id == bindparam("id"))


def _account_values(account_id: str) -> _AccountRow | None:
    """What claims need of an account, or None. An account this request already loaded (the code exchange)
    is read from the session, with its pending changes; otherwise one Core query."""
    from idp.accounts.models import Account

    loaded = db.session.identity_map.get(identity_key(Account, account_id))
    if isinstance(loaded, Account):
        return _AccountRow(loaded.email, bool(loaded.email_validated), loaded.nir_enc, loaded.status,
                           loaded.grants_cutoff)
    row = first_without_transaction(_account_statement(), {"id": account_id})
    return None if row is None else _AccountRow(row.email, bool(row.email_validated), row.nir_enc, row.status,
                                                row.cutoff)


def identity_claims(account_id: str, names: set[str]) -> dict[str, Any]:
    """The values of ``names`` for an account, in FranceConnect formats (unknown values left out)."""
    names = names - {"sub"}
    if not names:
        return {}
    account = _account_values(account_id)
    return {} if account is None else _identity_values(account, names)


def _identity_values(account: _AccountRow, names: set[str]) -> dict[str, Any]:
    from idp.accounts.service import identity_of_nir
    from idp.nir import Nir

    names = names - {"sub"}
    values: dict[str, Any] = {}
    if names & {"email", "email_verified"} and account.email:
        values["email"] = account.email
        values["email_verified"] = account.email_validated
    identity_names = names - {"email", "email_verified"}
    if identity_names:
        # idp.accounts.service.account_nir, from the column read above
        identity = identity_of_nir(Nir(decrypt(account.nir_enc, "nir")))
        values.update({
            "given_name": identity.given_name,
            "family_name": identity.family_name,
            "preferred_username": identity.preferred_username,
            "birthdate": identity.birthdate,
            "gender": identity.gender,
            "birthplace": identity.birthplace,
            "birthcountry": identity.birthcountry,
        })
    # birthplace stays "" for people born abroad, as FranceConnect expects.
    return {k: v for k, v in values.items() if k in names and v is not None}


def userinfo_claims(client: Client, user: EndUser, scope: str) -> dict[str, Any]:
    """The userinfo answer (OIDC Core §5.3.2): ``sub`` as this client sees it, plus the claims the
    granted scopes and the ``claims`` parameter's ``userinfo`` member ask for. The one definition of
    what userinfo says, for the Authlib endpoint and for :mod:`idp.oidc.userinfo_wsgi`. The account is read
    every time (one query, with the claims' columns): :class:`AccountNotUsable` when it is gone, disabled, or
    cut off since the token's login."""
    from idp.accounts.models import status_allows_sign_in
    from idp.oidc.tokens import predates_cutoff

    account = _account_values(user.account_id)
    if account is None or not status_allows_sign_in(account.status) \
            or predates_cutoff(user.auth_time, account.cutoff):
        raise AccountNotUsable
    names = requested_claims(scope, user.claims, "userinfo", client)
    return {"sub": subject(client, user.account_id), **_identity_values(account, names)}
