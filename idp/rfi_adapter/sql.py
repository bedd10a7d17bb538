"""The embedded registry: RFI records in the database (``idp rfi import FILE.json``).

NIRs are stored as a keyed HMAC for look-up and the whole identity is encrypted (AES-GCM), so a
database dump shows no NIR, name, IBAN or Carte Vitale number in clear. An import validates every
record first and writes nothing when any record is bad (all-or-nothing, one transaction).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import String, Text, bindparam, func, select
from sqlalchemy.orm import Mapped, mapped_column

from idp.crypto import DecryptionError, decrypt, encrypt, lookup_hmac
from idp.driver_sql import first_without_transaction
from idp.errors import ServiceUnavailable
from idp.extensions import Base, db
from idp.nir import Nir
from idp.rfi_adapter.base import Identity, IdentityNotFound
from idp.rfi_adapter.records import FieldError, InvalidRecord, parse_record, to_record


class RfiRecord(Base):
    """One registry entry; ``payload`` is the encrypted JSON of the identity (NIR included)."""

    __tablename__ = "rfi_records"

    nir_hmac: Mapped[str] = mapped_column(String(64), primary_key=True)
    payload: Mapped[str] = mapped_column(Text)


_TABLE = RfiRecord.__table__
_LOOKUP = select(_TABLE.c.payload).where(_TABLE.c.nir_hmac == bindparam("nir_hmac"))


class ImportRejected(ValueError):
    """The file was refused as a whole; ``errors`` name each bad record by index and field."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__(f"{len(errors)} error(s)")
        self.errors = errors


class SqlRfiAdapter:
    """Looks identities up in the ``rfi_records`` table."""

    def lookup(self, nir: Nir) -> Identity:
        """The identity for ``nir`` or :class:`IdentityNotFound`."""
        # The payload column alone; every login and userinfo asks: on the driver's cursor (idp.driver_sql), in
        # the request's transaction when it has one, else in autocommit.
        row = first_without_transaction(_LOOKUP, {"nir_hmac": lookup_hmac(nir.value)})
        payload = None if row is None else row[0]
        if payload is None:
            raise IdentityNotFound()
        try:
            return parse_record(json.loads(decrypt(payload, "rfi")))
        except (DecryptionError, InvalidRecord, ValueError) as exc:
            # Sealed with another data key, or corrupted: an operator problem, never "wrong password".
            raise ServiceUnavailable(detail=f"rfi record unreadable: {type(exc).__name__}") from None


def validate_all(records: Any) -> list[Identity]:
    """Every record as an Identity, or :class:`ImportRejected` listing every problem of every record."""
    if not isinstance(records, list):
        raise ImportRejected([FieldError(-1, "(file)", "must be a JSON array of records")])
    identities: list[Identity] = []
    errors: list[FieldError] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(records):
        try:
            identity = parse_record(raw, index)
        except InvalidRecord as exc:
            errors.extend(exc.errors)
            continue
        first = seen.setdefault(identity.nir.value, index)
        if first != index:
            errors.append(FieldError(index, "nir", f"same NIR as record {first}"))
        identities.append(identity)
    if errors:
        raise ImportRejected(errors)
    return identities


def import_records(records: Any) -> int:
    """Validate then insert or replace every record in one transaction; returns how many were written."""
    identities = validate_all(records)
    try:
        for identity in identities:
            db.session.merge(RfiRecord(nir_hmac=lookup_hmac(identity.nir.value),
                                       payload=encrypt(json.dumps(to_record(identity), ensure_ascii=False), "rfi")))
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return len(identities)


def load_file(path: str) -> Sequence[Any]:
    """Read an import file; a file that is not JSON is rejected like a bad record."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as exc:
        raise ImportRejected([FieldError(-1, "(file)", f"not valid JSON: line {exc.lineno} column {exc.colno}")]) \
            from None
    if not isinstance(data, list):
        raise ImportRejected([FieldError(-1, "(file)", "must be a JSON array of records")])
    return data


def count_records() -> int:
    """How many identities the embedded registry holds."""
    return int(db.session.scalar(select(func.count()).select_from(RfiRecord)) or 0)
