"""The embedded registry: RFI records in the database (``idp rfi import FILE.json``).

NIRs are stored as a keyed HMAC for look-up and encrypted for display, never in clear.
"""

from __future__ import annotations

import json

from sqlalchemy import String, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from idp.crypto import decrypt, lookup_hmac
from idp.extensions import Base, db
from idp.nir import Nir
from idp.rfi_adapter.base import Identity, IdentityNotFound


class RfiRecord(Base):
    """One registry entry; ``payload`` is the encrypted JSON of the identity (NIR included)."""

    __tablename__ = "rfi_records"

    nir_hmac: Mapped[str] = mapped_column(String(64), primary_key=True)
    payload: Mapped[str] = mapped_column(Text)


class SqlRfiAdapter:
    """Looks identities up in the ``rfi_records`` table."""

    def lookup(self, nir: Nir) -> Identity:
        """The identity for ``nir`` or :class:`IdentityNotFound`."""
        record = db.session.scalar(select(RfiRecord).where(RfiRecord.nir_hmac == lookup_hmac(nir.value)))
        if record is None:
            raise IdentityNotFound()
        data = json.loads(decrypt(record.payload, "rfi"))
        data["nir"] = Nir.parse(data["nir"])
        return Identity(**data)
