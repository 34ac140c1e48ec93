"""In-memory state of the sandbox: one :class:`BankStore` per bank code, plus the settings and the TPP registration.

Each bank keeps its own login flows, authorization codes, tokens, consents and quota counters, so a token of one
bank code is unknown to every other. Every read or write of a store happens under its ``lock``; the operations are
dictionary look-ups, so contention stays negligible.
"""

from __future__ import annotations

import secrets
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

from sandbox.banks import Bank
from sandbox.personas import NO_CONSENT, Account, Consent, Persona

TOKEN_BYTES = 40
CODE_BYTES = 24
DAY_SECONDS = 86_400


def new_token(nbytes: int = TOKEN_BYTES) -> str:
    """An opaque random token (URL-safe), like the 54-character tokens of the 89C3 guide."""
    return secrets.token_urlsafe(nbytes)


def normalise_account_key(value: str) -> str:
    """IBANs and PANs compare without spaces and case (the guide's own consent body has a leading space)."""
    return "".join(value.split()).upper()


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Lifetimes and limits; the defaults are BPCE's."""

    access_token_seconds: int = 3600
    refresh_token_days: int = 90
    code_seconds: int = 300
    flow_seconds: int = 900
    max_login_failures: int = 3
    page_size: int = 100
    unpaged_max_results: int = 500
    daily_quota: int = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class TppRegistration:
    """What the bank knows about the TPP: client_id, redirect URIs and the QSealC key it signs with."""

    client_id: str
    redirect_uris: tuple[str, ...]
    key_id: str
    qseal_public_key_pem: str


class Step(StrEnum):
    """Where a login flow stands."""

    IDENTIFICATION = "identification"
    AUTHENTICATION = "authentication"
    DECISION = "decision"
    LOCKED = "locked"
    DONE = "done"


@dataclass(slots=True, kw_only=True)
class Flow:
    """One PSU going through the authorize screens."""

    flow_id: str
    client_id: str
    redirect_uri: str
    state: str | None
    expires_at: float
    step: Step = Step.IDENTIFICATION
    failures: int = 0
    psu_id: str | None = None
    # PKCE (RFC 7636): what the authorize request carried, handed on to the code.
    code_challenge: str | None = None
    code_challenge_method: str | None = None


@dataclass(slots=True, kw_only=True)
class Grant:
    """The token pair born from one SCA: a refresh token and its current access token."""

    client_id: str
    psu_id: str
    refresh_token: str
    refresh_expires_at: float
    access_token: str
    access_expires_at: float
    revoked: bool = False


@dataclass(slots=True, kw_only=True)
class AuthorizationCode:
    """A one-time code handed to the redirect URI."""

    code: str
    client_id: str
    redirect_uri: str
    psu_id: str
    expires_at: float
    used: bool = False
    grant: Grant | None = None
    code_challenge: str | None = None
    code_challenge_method: str | None = None


@dataclass(slots=True)
class QuotaCounter:
    """Calls without ``PSU-IP-Address`` per (client, PSU, account, method) on one Europe/Paris calendar day."""

    day: date | None = None
    counts: dict[tuple[str, str, str, str], int] = field(default_factory=dict)

    def take(self, day: date, key: tuple[str, str, str, str], limit: int) -> bool:
        """Count one call; ``False`` when the limit for the day was already reached."""
        if day != self.day:
            self.day = day
            self.counts.clear()
        used = self.counts.get(key, 0)
        if used >= limit:
            return False
        self.counts[key] = used + 1
        return True


class BankStore:
    """All mutable state of one bank code, plus its personas indexed for fast look-ups.

    Parameters
    ----------
    bank
        The establishment.
    personas
        Its test customers.
    """

    def __init__(self, bank: Bank, personas: tuple[Persona, ...]) -> None:
        self.bank = bank
        self.personas: dict[str, Persona] = {persona.identifier: persona for persona in personas}
        self.accounts: dict[str, dict[str, Account]] = {
            persona.identifier: {account.resource_id: account for account in persona.accounts} for persona in personas
        }
        self.accounts_by_key: dict[str, dict[str, Account]] = {
            persona.identifier: {normalise_account_key(account.key): account for account in persona.accounts}
            for persona in personas
        }
        self.lock = threading.Lock()
        self.flows: dict[str, Flow] = {}
        self.codes: dict[str, AuthorizationCode] = {}
        self.access_tokens: dict[str, Grant] = {}
        self.refresh_tokens: dict[str, Grant] = {}
        self.grants: dict[tuple[str, str], Grant] = {}
        self.consents: dict[tuple[str, str], Consent] = {}
        self.quota = QuotaCounter()
        # Requests that reached this bank's token or AISP endpoints (faults and refusals included), by scope.
        self.served: Counter[str] = Counter()

    def reset(self) -> None:
        """Forget every flow, code, token, consent change and quota count."""
        with self.lock:
            self.flows.clear()
            self.codes.clear()
            self.access_tokens.clear()
            self.refresh_tokens.clear()
            self.grants.clear()
            self.consents.clear()
            self.quota = QuotaCounter()
            self.served.clear()

    def consent_for(self, client_id: str, psu: Persona) -> Consent:
        """The PSU's current consent for this TPP (the persona's initial one until a PUT /consents)."""
        stored = self.consents.get((client_id, psu.identifier))
        if stored is not None:
            return stored
        return psu.initial_consent if psu.accounts else NO_CONSENT

    def revoke(self, grant: Grant) -> None:
        """Revoke both tokens of a grant (caller holds the lock)."""
        grant.revoked = True
        self.access_tokens.pop(grant.access_token, None)
        self.refresh_tokens.pop(grant.refresh_token, None)
        if self.grants.get((grant.client_id, grant.psu_id)) is grant:
            del self.grants[(grant.client_id, grant.psu_id)]

    def revoke_psu(self, psu_id: str | None) -> int:
        """Revoke every grant of one PSU (or of everybody); returns how many."""
        with self.lock:
            victims = [grant for grant in self.grants.values() if psu_id is None or grant.psu_id == psu_id]
            for grant in victims:
                self.revoke(grant)
            return len(victims)

    def expire_refresh_tokens(self, psu_id: str | None, now: float) -> int:
        """Make refresh tokens (of one PSU, or all) expired as of ``now``; returns how many."""
        with self.lock:
            count = 0
            for grant in self.grants.values():
                if psu_id is None or grant.psu_id == psu_id:
                    grant.refresh_expires_at = min(grant.refresh_expires_at, now)
                    count += 1
            return count

    def expire_access_tokens(self, psu_id: str | None, now: float) -> int:
        """Make current access tokens (of one PSU, or all) expired as of ``now``; returns how many."""
        with self.lock:
            count = 0
            for grant in self.grants.values():
                if psu_id is None or grant.psu_id == psu_id:
                    grant.access_expires_at = min(grant.access_expires_at, now)
                    count += 1
            return count
