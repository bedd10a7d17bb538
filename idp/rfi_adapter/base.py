"""The RFI port: what the identity provider needs from the registry of individuals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from idp.errors import ServiceUnavailable
from idp.nir import Nir


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    """One person as the RFI knows them (FranceConnect pivot identity + support data)."""

    nir: Nir
    given_name: str  # all first names, space separated
    family_name: str  # birth name
    preferred_username: str | None  # usage name
    birthdate: str  # YYYY-MM-DD, or the "présumé né" forms YYYY-MM-00 and YYYY-00-00
    gender: Literal["female", "male"]
    birthplace: str  # INSEE COG code of the commune, "" when born abroad
    birthcountry: str  # INSEE COG code of the country, 99100 for France
    phone: str | None  # E.164
    vitale_card_serial: str
    iban: str


class IdentityNotFound(LookupError):
    """The registry answered: no such person."""


class RegistryUnavailable(ServiceUnavailable):
    """The registry could not answer (timeout, 5xx, malformed answer, circuit open)."""

    code = "registry_unavailable"
    description = ("Le service est momentanément indisponible : nous ne pouvons pas vérifier votre identité "
                   "pour le moment. Merci de réessayer dans quelques minutes.")


class RfiAdapter(Protocol):
    """Looks identities up in the registry."""

    def lookup(self, nir: Nir) -> Identity:
        """The identity for ``nir``; raises :class:`IdentityNotFound` or :class:`RegistryUnavailable`."""
        ...
