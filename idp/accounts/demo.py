"""Demo data for ``make run`` / ``idp demo`` (development only).

The step imports ``config/rfi-demo.json`` into the embedded registry when it is empty, then creates
the demo accounts that do not exist yet. Fictional people; the NIRs have valid keys.

| NIR (15)        | person                                  | account                                    |
|-----------------|-----------------------------------------|--------------------------------------------|
| 285036938304242 | Marie Claire DUPONT, Lyon               | marie.dupont@example.fr (validated)        |
| 162117511402161 | Jean Pierre MARTIN, Paris 14e           | jean.martin@example.fr, NOT validated      |
| 190072A00401746 | Paul Antoine SANTONI, Ajaccio (2A)      | paul.santoni@example.fr (validated)        |
| 278019935000783 | Fatima Zahra BENALI, born in Morocco    | fatima.benali@example.fr (validated)       |
| 180999934100334 | Amadou DIALLO, "présumé né" 1980-00-00  | amadou.diallo@example.fr (validated)       |
| 201093306310420 | Léa Camille BERNARD, Bordeaux           | NO account: try "Créer mon compte" with    |
|                 |                                         | 14/09/2001, Vitale 8250067890, IBAN 0432102 |

Every demo account's password is ``demo-ameli-2026``.
"""

from __future__ import annotations

import contextlib
import logging
import os

from flask import Flask

from idp.demo import DEMO_STEPS

log = logging.getLogger(__name__)

DEMO_FILE = os.path.join(os.path.dirname(__file__), "..", "..", "config", "rfi-demo.json")
DEMO_PASSWORD = "demo-ameli-2026"
DEMO_ACCOUNTS = [  # (NIR, e-mail, validated)
    ("285036938304242", "marie.dupont@example.fr", True),
    ("162117511402161", "jean.martin@example.fr", False),
    ("190072A00401746", "paul.santoni@example.fr", True),
    ("278019935000783", "fatima.benali@example.fr", True),
    ("180999934100334", "amadou.diallo@example.fr", True),
]


def load_demo(app: Flask) -> None:
    """Import the demo registry when empty, then create the missing demo accounts."""
    from idp.accounts import service
    from idp.nir import Nir
    from idp.rfi_adapter.sql import SqlRfiAdapter, count_records, import_records, load_file

    with app.app_context():
        if isinstance(app.extensions.get("idp.rfi"), SqlRfiAdapter) and count_records() == 0:
            count = import_records(load_file(os.path.abspath(DEMO_FILE)))
            log.info("demo registry imported", extra={"identities": count})
        created = 0
        for nir_text, email, validated in DEMO_ACCOUNTS:
            nir = Nir.parse(nir_text)
            if service.find_account(nir) is None:
                phone = None
                with contextlib.suppress(LookupError):  # an account without RFI phone is fine for a demo
                    phone = service.identity_of_nir(nir).phone
                service.create_account(nir, DEMO_PASSWORD, email=email, email_validated=validated, phone=phone)
                created += 1
        log.info("demo accounts ready", extra={"accounts_created": created})


if not any(name == "accounts" for name, _ in DEMO_STEPS):
    DEMO_STEPS.append(("accounts", load_demo))
