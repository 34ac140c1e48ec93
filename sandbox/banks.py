"""The BPCE establishments the sandbox plays, addressed by their bank code (``/{bank_code}/stet/psd2/...``).

This list is the sandbox's own; the gateway keeps its registry elsewhere and the two are not linked. Bank codes that
several brands share (13807 = B.P Grand Ouest and CMM Grand Ouest in the 89C3 sandbox guide) share one token
authority and one set of personas, exactly as they share one host at BPCE.
"""

from __future__ import annotations

from dataclasses import dataclass

# French RIB letter values: A-I -> 1-9, J-R -> 1-9, S-Z -> 2-9.
RIB_LETTERS = {char: str(i % 9 + 1 if i < 18 else i - 16) for i, char in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZ")}  # noqa: PLR2004
IBAN_MIN_LENGTH = 5
IBAN_MODULUS = 97
IBAN_CHECK_BASE = 98


@dataclass(frozen=True, slots=True, kw_only=True)
class Brand:
    """A commercial brand served under a bank code."""

    short_name: str
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Bank:
    """One BPCE establishment (one host at BPCE, one path prefix here).

    Parameters
    ----------
    code
        The establishment code (``cdetab``), also the bank part of every IBAN it issues.
    brands
        The brands answering under this code.
    bic
        BIC reported in ``bicFi`` on accounts.
    branch
        Branch (guichet) code used to build the personas' IBANs.
    identity_supported
        Whether ``GET /end-user-identity`` is implemented (Caisses d'Epargne do not offer it on 89C3).
    beneficiaries_supported
        Whether ``GET /trusted-beneficiaries`` is implemented.
    paged
        Whether transactions come in pages (Banques Populaires: 100 a page) or in one capped list (Caisses
        d'Epargne: at most 500 operations, no paging).
    """

    code: str
    brands: tuple[Brand, ...]
    bic: str
    branch: str
    identity_supported: bool = True
    beneficiaries_supported: bool = True
    paged: bool = True

    @property
    def display_name(self) -> str:
        """Brand names joined, for screens and logs."""
        return " / ".join(f"{brand.name} ({brand.short_name})" for brand in self.brands)


BANKS: tuple[Bank, ...] = (
    Bank(
        code="13807",
        brands=(
            Brand(short_name="BPGO", name="B.P Grand Ouest"),
            Brand(short_name="CMMGO", name="CMM Grand Ouest"),
        ),
        bic="CCBPFRPPNAN",
        branch="00804",
    ),
    Bank(
        code="10207",
        brands=(Brand(short_name="BPRP", name="Banque Populaire Rives de Paris"),),
        bic="CCBPFRPPMTG",
        branch="00221",
        beneficiaries_supported=False,
    ),
    Bank(
        code="17515",
        brands=(Brand(short_name="CEIDF", name="Caisse d'Epargne Ile-de-France"),),
        bic="CEPAFRPP751",
        branch="90000",
        identity_supported=False,
        beneficiaries_supported=False,
        paged=False,
    ),
)


def bank_by_code() -> dict[str, Bank]:
    """Return the banks keyed by bank code."""
    return {bank.code: bank for bank in BANKS}


def _digits(text: str) -> str:
    return "".join(RIB_LETTERS.get(char, char) for char in text.upper())


def rib_key(bank_code: str, branch: str, account_number: str) -> str:
    """Compute the two-digit French RIB key of a bank code, branch code and 11-character account number."""
    total = 89 * int(bank_code) + 15 * int(branch) + 3 * int(_digits(account_number))
    return f"{IBAN_MODULUS - total % IBAN_MODULUS:02d}"


def french_iban(bank_code: str, branch: str, account_number: str) -> str:
    """Build a valid French IBAN (ISO 13616 mod-97 and RIB key) whose bank part is ``bank_code``."""
    bban = f"{bank_code}{branch}{account_number}{rib_key(bank_code, branch, account_number)}"
    remainder = int(_iban_numeric(bban + "FR00"))
    return f"FR{IBAN_CHECK_BASE - remainder % IBAN_MODULUS:02d}{bban}"


def _iban_numeric(text: str) -> str:
    return "".join(str(int(char, 36)) for char in text)


def iban_is_valid(iban: str) -> bool:
    """Check an IBAN's mod-97 checksum."""
    compact = iban.replace(" ", "").upper()
    if len(compact) < IBAN_MIN_LENGTH or not compact.isalnum():
        return False
    return int(_iban_numeric(compact[4:] + compact[:4])) % IBAN_MODULUS == 1
