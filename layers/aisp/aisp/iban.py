"""IBAN checks (ISO 13616): electronic format, the registry length of the country, and the mod-97 check digits.

A valid IBAN is not necessarily the user's: the bank decides that (PUT /consents answers 400 for an account the PSU
does not hold). These checks only spare the bank calls that cannot succeed and give the client a precise error.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["IBAN_LENGTHS", "is_valid_iban", "normalise_iban"]

_SHAPE: Final = re.compile(r"^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$")
MOD97_REMAINDER: Final = 1

# IBAN length per country, from the SWIFT IBAN registry. French overseas territories use FR IBANs.
IBAN_LENGTHS: Final[dict[str, int]] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21,
    "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28,
    "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22,
    "RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
    "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip


def normalise_iban(value: str) -> str:
    """The electronic format: spaces removed, upper case (``fr76 1380 ...`` → ``FR761380...``)."""
    return "".join(value.split()).upper()


def is_valid_iban(value: str) -> bool:
    """Whether ``value`` (already normalised) is a well-formed IBAN of a registry country with valid check digits."""
    if not _SHAPE.fullmatch(value) or IBAN_LENGTHS.get(value[:2]) != len(value):
        return False
    rearranged = value[4:] + value[:4]
    digits = "".join(str(int(char, 36)) for char in rearranged)
    return int(digits) % 97 == MOD97_REMAINDER
