"""Registry of the STET establishments the gateway serves (Groupe BPCE's 89C3 and any other), from ``banks.json``.

``bank_code`` is the establishment code (cdetab): it selects the host and the token authority and keys a user's
connection, so brands that share a code must agree on everything a call depends on (the loader checks). Each entry
picks a named **profile** per environment (STET version, API prefix, date format, capabilities, response signature
policy), optionally overriding parts of it. :func:`load_registry` resolves the entries for one environment (its own
choice, else ``local`` → ``sandbox`` → ``live``) into :class:`Bank`, what the rest of the code reads. Design:
``docs/banks.md``.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from aisp.errors import ConfigurationError, UnknownBankError
from aisp.settings import BankSettings

REGISTRY_FILE = Path(__file__).with_name("banks.json")

HOST_TEMPLATES = {
    "sandbox": "https://www.{bank_code}.sandbox.api.89c3.com",
    "live": "https://www.{bank_code}.live.api.89c3.com",
}
DEFAULT_OAUTH_PATH = "/stet/psd2/oauth"
Environment = Literal["local", "sandbox", "live"]
# Where an environment falls back when an entry does not name it.
_FALLBACK: dict[str, tuple[str, ...]] = {"local": ("local", "sandbox", "live"), "sandbox": ("sandbox", "live")}

BankCode = Annotated[str, Field(pattern=r"^[0-9]{5}$")]
PathPrefix = Annotated[str, Field(pattern=r"^(/[A-Za-z0-9._~-]+)+$")]
HttpsOrigin = Annotated[str, Field(pattern=r"^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?$")]


class Network(StrEnum):
    """The banking network an establishment belongs to."""

    BANQUE_POPULAIRE = "banque_populaire"
    CAISSE_EPARGNE = "caisse_epargne"
    OTHER = "other"


class BankCapabilities(BaseModel):
    """What an establishment's API offers (89C3 'Limits' pages, the seed)."""

    # GET /v1/banks always sends every field: the API's schema marks them all required.
    model_config = ConfigDict(
        frozen=True, extra="forbid", json_schema_serialization_defaults_required=True, defer_build=True
    )

    identity: bool
    trusted_beneficiaries: bool
    # Transactions per page; None = no pagination (a capped single page).
    page_size: Annotated[int, Field(ge=1, le=1000)] | None
    # How far back the bank serves transactions: an older date_from is refused with a 400 naming this limit.
    history_days: Annotated[int, Field(ge=1, le=730)]
    token_revocation: bool
    # Days a refresh token stays valid after the last strong customer authentication.
    refresh_token_days: Annotated[int, Field(ge=1, le=180)]
    # PKCE (RFC 7636, S256) on the authorization-code flow. On unless a bank is known to refuse the parameters.
    pkce: bool = True
    # Reads a day without the user per account and AIS method (RTS art. 36(5): 4; BPCE counts per Paris day).
    unattended_daily_limit: Annotated[int, Field(ge=0, le=100)] = 4


class SignatureMode(StrEnum):
    """What to do with the bank's signed responses: not check, check and log, or refuse what does not verify."""

    OFF = "off"
    LOG = "log"
    ENFORCE = "enforce"


class ResponseSignaturePolicy(BaseModel):
    """How the bank's response ``Signature``/``Digest`` are checked (see :mod:`aisp.signing.response`).

    ``certificates`` are PEM certificates pinned here; the credentials secret may pin more. ``log`` is the default
    until a real certificate is pinned; ``enforce`` needs one (the client refuses to start without).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    mode: SignatureMode = SignatureMode.LOG
    certificates: tuple[str, ...] = ()


class Profile(BaseModel):
    """What one API product of a bank serves (a ``profiles`` entry of the file)."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    stet_version: Annotated[str, Field(pattern=r"^1\.[0-9]+\.[0-9]+(\.[0-9]+)?$")]
    api_prefix: PathPrefix
    # STET types dateFrom/dateTo as date-time; a bank that wants YYYY-MM-DD says "date" (BPCE takes both).
    date_format: Literal["date-time", "date"] = "date-time"
    capabilities: BankCapabilities
    # A factory, not an instance: building one at import would build the model's schema at every cold start.
    response_signature: ResponseSignaturePolicy = Field(default_factory=ResponseSignaturePolicy)
    note: str | None = None


class _Brand(BaseModel):
    """What names an establishment, in the file and once resolved."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    bank_code: BankCode
    name: Annotated[str, Field(min_length=1, max_length=120)]
    short_name: Annotated[str, Field(pattern=r"^[A-Z0-9]{2,12}$")]
    network: Network


class Bank(_Brand, Profile):
    """One establishment (brand), resolved for one environment: its names, its profile there, where to reach it."""

    environment: Environment = "live"
    # True for the establishments the 89C3 sandbox serves (the entry names a sandbox profile).
    sandbox: bool = False
    # Origins per environment for a bank outside 89C3's host scheme; None = HOST_TEMPLATES.
    hosts: dict[str, HttpsOrigin] | None = None
    oauth_path: PathPrefix = DEFAULT_OAUTH_PATH
    sources: tuple[str, ...] = ()

    @property
    def pkce(self) -> bool:
        """Whether the authorize/token calls carry PKCE (the capability of the environment's profile)."""
        return self.capabilities.pkce


class ProfileChoice(BaseModel):
    """An environment's choice in an entry: a profile, optionally with parts overridden."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    profile: str
    stet_version: str | None = None
    api_prefix: str | None = None
    date_format: Literal["date-time", "date"] | None = None
    capabilities: dict[str, Any] | None = None
    response_signature: dict[str, Any] | None = None
    note: str | None = None


class BankEntry(_Brand):
    """One ``banks`` entry of the file."""

    environments: dict[Environment, str | ProfileChoice]
    hosts: dict[Literal["sandbox", "live"], HttpsOrigin] | None = None
    oauth_path: PathPrefix = DEFAULT_OAUTH_PATH
    sources: Annotated[tuple[str, ...], Field(min_length=1)]
    note: str | None = None

    @model_validator(mode="after")
    def _live_is_named(self) -> BankEntry:
        if "live" not in self.environments:
            raise ValueError("environments must name a live profile")
        return self


class RegistryFile(BaseModel):
    """The shape of ``banks.json``."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    about: str
    sources: dict[str, str]
    profiles: dict[str, Profile]
    banks: Annotated[list[BankEntry], Field(min_length=1)]

    @model_validator(mode="after")
    def _references_exist(self) -> RegistryFile:
        for index, entry in enumerate(self.banks):
            unknown = [s for s in entry.sources if s not in self.sources]
            if unknown:
                raise ValueError(f"banks.{index} ({entry.short_name}) names unknown source(s): {', '.join(unknown)}")
            for environment, choice in entry.environments.items():
                name = choice if isinstance(choice, str) else choice.profile
                if name not in self.profiles:
                    raise ValueError(f"banks.{index} ({entry.short_name}) {environment}: unknown profile {name!r}")
        return self

    def resolve(self, entry: BankEntry, environment: Environment) -> Bank:
        """``entry`` as the establishment serves it in ``environment``."""
        found = next(env for env in _FALLBACK.get(environment, (environment,)) if env in entry.environments)
        choice = entry.environments[found]
        if isinstance(choice, str):
            choice = ProfileChoice(profile=choice)
        profile = self.profiles[choice.profile].model_dump()
        for name in ("stet_version", "api_prefix", "date_format", "note"):
            if getattr(choice, name) is not None:
                profile[name] = getattr(choice, name)
        for name in ("capabilities", "response_signature"):
            profile[name] = {**profile[name], **(getattr(choice, name) or {})}
        return Bank.model_validate(
            {
                **profile,
                "bank_code": entry.bank_code,
                "name": entry.name,
                "short_name": entry.short_name,
                "network": entry.network,
                "environment": environment,
                "sandbox": "sandbox" in entry.environments,
                "hosts": entry.hosts,
                "oauth_path": entry.oauth_path,
                "sources": tuple(self.sources[s] for s in entry.sources),
                "note": entry.note or profile.get("note"),
            }
        )


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
            shared = ("api_prefix", "stet_version", "capabilities", "response_signature", "hosts", "oauth_path")
            if any(getattr(first, name) != getattr(bank, name) for name in shared):
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


def load_registry(path: Path = REGISTRY_FILE, *, environment: Environment = "live") -> BankRegistry:
    """Load and validate a registry file, resolved for ``environment``.

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
        banks = [parsed.resolve(entry, environment) for entry in parsed.banks]
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors(include_url=False)]
        raise ConfigurationError("bank registry invalid: " + "; ".join(problems), details={"path": str(path)}) from None
    return BankRegistry(banks)


def bank_base_url(bank: Bank, settings: BankSettings) -> str:
    """Origin (plus path prefix in local mode) of the bank's API and token endpoints; never ends with ``/``."""
    if settings.bank_environment == "local":
        return settings.bank_base_url_template.format(bank_code=bank.bank_code)
    if bank.hosts and settings.bank_environment in bank.hosts:
        return bank.hosts[settings.bank_environment].rstrip("/")
    return HOST_TEMPLATES[settings.bank_environment].format(bank_code=bank.bank_code)


def authorize_base_url(bank: Bank, settings: BankSettings) -> str:
    """Base of the browser-facing login screens (``{oauth_path}/authorize`` is appended)."""
    if settings.bank_environment == "local" and settings.bank_authorize_url_template:
        return settings.bank_authorize_url_template.format(bank_code=bank.bank_code)
    return bank_base_url(bank, settings)
