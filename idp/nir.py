"""The NIR (numéro d'inscription au répertoire, "numéro de sécurité sociale") as a value type.

Accepted input: 13 characters (the key is then computed) or 15 characters (the key is checked),
spaces, dots and dashes allowed, Corsican departments 2A/2B included; the check itself is
python-stdnum's ``stdnum.fr.nir``. A :class:`Nir` never shows its value in ``repr`` or ``str``
so that it cannot end up in a log by accident; use :attr:`Nir.value` where the digits are needed
and :meth:`Nir.masked` to show it to its owner.
"""

from __future__ import annotations

import re

from stdnum.exceptions import ValidationError
from stdnum.fr import nir as stdnum_nir

_SEPARATORS = re.compile(r"[\s.\-]")


class InvalidNir(ValueError):
    """The text is not a valid NIR; ``reason`` is a French sentence for the form."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Nir:
    """A validated, normalised 15-character NIR (13 characters + 2-digit key)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    @classmethod
    def parse(cls, text: str) -> Nir:
        """Validate and normalise ``text``; raise :class:`InvalidNir` with a French reason."""
        compact = _SEPARATORS.sub("", text or "").upper()
        if not compact:
            raise InvalidNir("Saisissez votre numéro de sécurité sociale.")
        if len(compact) not in (13, 15):
            raise InvalidNir("Le numéro de sécurité sociale comporte 13 caractères (15 avec la clé).")
        if not re.fullmatch(r"[0-9]{5}(?:[0-9]{2}|2A|2B)[0-9]{6}(?:[0-9]{2})?", compact):
            raise InvalidNir("Le numéro de sécurité sociale ne contient que des chiffres (2A ou 2B pour la Corse).")
        if len(compact) == 13:
            compact += stdnum_nir.calc_check_digits(compact)
        try:
            return cls(stdnum_nir.validate(compact))
        except ValidationError:
            raise InvalidNir("Le numéro de sécurité sociale saisi n'est pas valide. Vérifiez la clé.") from None

    @classmethod
    def is_valid(cls, text: str) -> bool:
        """True when :meth:`parse` would succeed."""
        try:
            cls.parse(text)
            return True
        except InvalidNir:
            return False

    @property
    def value(self) -> str:
        """The 15 normalised characters. Never log this."""
        return self._value

    def masked(self) -> str:
        """Shown to its owner: first digit and key visible, ``2 ** ** ** *** *** 93``."""
        return f"{self._value[0]} ** ** ** *** *** {self._value[13:]}"

    def formatted(self) -> str:
        """Grouped as printed on a Carte Vitale: ``2 95 10 99 126 111 93``."""
        return str(stdnum_nir.format(self._value))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Nir) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return f"Nir({self.masked()!r})"

    __str__ = __repr__
