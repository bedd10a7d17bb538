"""Seed the benchmark's database through the IdP's own services (registry records, accounts, clients, keys).

The accounts have a validated e-mail (so that every web login asks for the e-mail code) and have
answered "Ne plus me rappeler" to the biometric offer, so that the journey measured is the
seed's: identify -> code -> done, and with a trusted browser identify -> done.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from bench.flows import REDIRECT_URI, VirtualUser

PASSWORD = "Banc-Essai-Tartine-" + "42"


@dataclass
class Seeded:
    """What the load generator needs: the client and the people."""

    client_id: str
    client_secret: str
    users: list[VirtualUser]


def nir_for(index: int) -> str:
    """A valid, distinct 15-character NIR for virtual user ``index`` (key computed by :class:`Nir`)."""
    from idp.nir import Nir

    month, order = 1 + index // 999 % 12, 1 + index % 999
    return Nir.parse(f"1850{month:1d}75056{order:03d}" if month < 10 else f"185{month:02d}75056{order:03d}").value


def make_app(settings: dict[str, Any]) -> Any:
    """The IdP application with the bench settings (for seeding, measuring and profiling in-process)."""
    from idp import create_app

    return create_app(settings)


def seed(app: Any, count: int) -> Seeded:
    """Create the schema, the signing keys, the RP client and ``count`` accounts."""
    from idp.extensions import db
    from idp.oidc import keys
    from idp.oidc.clients import create_client

    with app.app_context():
        db.create_all()
        for alg in keys.ALGORITHMS:
            keys.ensure_keys(alg)
        registered = create_client(name="Banc d'essai", kind="web", redirect_uris=[REDIRECT_URI],
                                   auth_method="client_secret_basic")
        assert registered.client_secret is not None
        users = [add_account(i) for i in range(count)]
        return Seeded(registered.client.client_id, registered.client_secret, users)


def identity_for(index: int) -> dict[str, str]:
    """The fictional registry (RFI) record of virtual user ``index``: a login checks the person is known."""
    return {"nir": nir_for(index), "given_name": "Banc", "family_name": f"ESSAI {index}", "birthdate": "1985-01-15",
            "gender": "male", "birthplace": "75056", "birthcountry": "99100", "vitale_card_serial": f"82{index:08d}",
            "iban": "FR7630006000011234567890189"}


def add_account(index: int) -> VirtualUser:
    """One account (inside an app context), its registry record and its virtual user."""
    from idp.accounts import service
    from idp.extensions import db
    from idp.nir import Nir
    from idp.rfi_adapter.sql import import_records

    nir = nir_for(index)
    import_records([identity_for(index)])
    email = f"banc{index}.{secrets.token_hex(3)}@bench.example"
    account = service.create_account(Nir.parse(nir), PASSWORD, email=email, email_validated=True)
    account.biometric_offer_optout = True
    db.session.commit()
    return VirtualUser(index=index, nir=nir, password=PASSWORD, email=email)
