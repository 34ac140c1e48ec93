"""Registry of Groupe BPCE establishments, loaded from ``banks.json`` beside this module.

``bank_code`` is the establishment code (cdetab). It selects the host (``www.{bank_code}.live.api.89c3.com``) and
the token authority, so it is also the key of a user's connection: brands that share a code (the seed's BPGO and
CMMGO are both 13807) share one connection, and the loader checks that they agree on everything a call depends on.
"""

from __future__ import annotations

import json
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aisp.errors import ConfigurationError, UnknownBankError
from aisp.settings import BankSettings

REGISTRY_FILE = Path(__file__).with_name("banks.json")

HOST_TEMPLATES = {
    "sandbox": "https://www.{bank_code}.sandbox.api.89c3.com",
    "live": "https://www.{bank_code}.live.api.89c3.com",
}

BankCode = Annotated[str, Field(pattern=r"^[0-9]{5}$")]


class Network(StrEnum):
    """The banking network an establishment belongs to."""

    BANQUE_POPULAIRE = "banque_populaire"
    CAISSE_EPARGNE = "caisse_epargne"
    OTHER = "other"


class BankCapabilities(BaseModel):
    """What an establishment's API offers (89C3 'Limits' pages)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    identity: bool
    trusted_beneficiaries: bool
    # Transactions per page; None = no pagination (a capped single page).
    page_size: Annotated[int, Field(ge=1, le=1000)] | None
    history_days: Annotated[int, Field(ge=1, le=730)]
    token_revocation: bool
    # Days a refresh token stays valid after the last strong customer authentication.
    refresh_token_days: Annotated[int, Field(ge=1, le=180)]


class Bank(BaseModel):
    """One establishment (brand) of the registry."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bank_code: BankCode
    name: Annotated[str, Field(min_length=1, max_length=120)]
    short_name: Annotated[str, Field(pattern=r"^[A-Z0-9]{2,12}$")]
    network: Network
    stet_version: Annotated[str, Field(pattern=r"^1\.[0-9]+\.[0-9]+(\.[0-9]+)?$")]
    api_prefix: Annotated[str, Field(pattern=r"^/stet/psd2/v[0-9.]+$")]
    capabilities: BankCapabilities
    # STET types dateFrom/dateTo as date-time; a bank that wants YYYY-MM-DD says "date" (BPCE takes both).
    date_format: Literal["date-time", "date"] = "date-time"
    # True for the establishments the 89C3 sandbox serves.
    sandbox: bool = False


class RegistryFile(BaseModel):
    """The shape of ``banks.json``."""

    model_config = ConfigDict(extra="forbid")

    about: str
    banks: Annotated[list[Bank], Field(min_length=1)]


class BankRegistry:
    """Look-ups over the loaded registry."""

    def __init__(self, banks: list[Bank]) -> None:
        self._banks = tuple(banks)
        self._by_code: dict[str, Bank] = {}
        short_names: set[str] = set()
        for bank in banks:
            if bank.short_name in short_names:
                raise ConfigurationError(
                    "bank registry lists a short name twice", details={"short_name": bank.short_name}
                )
            short_names.add(bank.short_name)
            first = self._by_code.setdefault(bank.bank_code, bank)
            if (first.api_prefix, first.stet_version, first.capabilities) != (
                bank.api_prefix,
                bank.stet_version,
                bank.capabilities,
            ):
                raise ConfigurationError(
                    "bank registry: brands sharing a bank code disagree on API prefix, version or capabilities",
                    details={"bank_code": bank.bank_code, "short_names": [first.short_name, bank.short_name]},
                )

    @property
    def banks(self) -> tuple[Bank, ...]:
        """Every brand, in registry order."""
        return self._banks

    def get(self, bank_code: str) -> Bank:
        """Return the establishment for ``bank_code``.

        Raises
        ------
        UnknownBankError
            When no establishment has this code (a :class:`~aisp.errors.NotFoundError`).
        """
        try:
            return self._by_code[bank_code]
        except KeyError:
            raise UnknownBankError("unknown bank code", details={"bank_code": bank_code[:16]}) from None

    def __contains__(self, bank_code: object) -> bool:
        return bank_code in self._by_code


def load_registry(path: Path = REGISTRY_FILE) -> BankRegistry:
    """Load and validate a registry file.

    Raises
    ------
    ConfigurationError
        When the file is missing, not JSON, or an entry is invalid (the message names the entry and field).
    """
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigurationError("bank registry file unreadable", details={"path": str(path)}) from exc
    try:
        parsed = RegistryFile.model_validate(raw)
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors(include_url=False)]
        raise ConfigurationError("bank registry invalid: " + "; ".join(problems), details={"path": str(path)}) from None
    return BankRegistry(parsed.banks)


@cache
def get_registry() -> BankRegistry:
    """The packaged registry, loaded once per container."""
    return load_registry()


def bank_base_url(bank: Bank, settings: BankSettings) -> str:
    """Origin (plus path prefix in local mode) of the bank's API and token endpoints; never ends with ``/``."""
    if settings.bank_environment == "local":
        return settings.bank_base_url_template.format(bank_code=bank.bank_code)
    return HOST_TEMPLATES[settings.bank_environment].format(bank_code=bank.bank_code)


def authorize_base_url(bank: Bank, settings: BankSettings) -> str:
    """Base of the browser-facing login screens (``/stet/psd2/oauth/authorize`` is appended)."""
    if settings.bank_environment == "local" and settings.bank_authorize_url_template:
        return settings.bank_authorize_url_template.format(bank_code=bank.bank_code)
    return bank_base_url(bank, settings)
