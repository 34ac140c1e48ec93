"""Deterministic transaction history of every sandbox account.

Each calendar day of each account gets its transactions from a random generator seeded with the account's resource
id and the date, so a transaction keeps its id, amount and text from one run (and one day) to the next, and the
90-day window simply slides as the sandbox clock moves. Transactions of today and yesterday are pending (``PDNG``,
no booking date yet); older ones are booked, so a pending item turns into a booked one with the same id.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

from sandbox.personas import HistoryProfile

HISTORY_DAYS = 90
PENDING_DAYS = 2
MIN_PER_DAY = 3
MAX_PER_DAY = 6
SALARY_DAY = 28
# HistoryProfile.BULK: 111 a day, 112 on days whose ordinal is a multiple of 9. Any 90 consecutive days hold exactly
# ten of those, so the window always holds 90 * 111 + 10 = 10,000 transactions (100 pages of 100).
BULK_PER_DAY = 111
BULK_EXTRA_EVERY = 9

CRDT = "CRDT"
DBIT = "DBIT"

_MERCHANTS = (
    ("CARREFOUR", "NANTES"),
    ("E.LECLERC", "RENNES"),
    ("SNCF INTERNET", "PARIS"),
    ("AMAZON EU SARL", "LUXEMBOURG"),
    ("BOULANGERIE DU PORT", "LA ROCHELLE"),
    ("FNAC", "ANGERS"),
    ("TOTALENERGIES", "LE MANS"),
    ("PHARMACIE CENTRALE", "BREST"),
    ("DECATHLON", "LORIENT"),
    ("MONOPRIX", "PARIS"),
    ("UBER EATS", "PARIS"),
    ("IKEA", "SAINT-HERBLAIN"),
    ("CINEMA GAUMONT", "NANTES"),
    ("LEROY MERLIN", "VANNES"),
)
_CREDITORS = ("EDF", "FREE MOBILE", "ORANGE", "MAIF", "NETFLIX.COM", "ENGIE", "DGFIP IMPOTS", "SFR")
_PEOPLE = ("DUPONT JEAN", "MARTIN CLAIRE", "BERNARD LUC", "PETIT ANNE", "ROUX THOMAS", "FAURE ELODIE")
_CUSTOMERS = ("ATELIER BLEU SARL", "MAIRIE DE NANTES", "OCEAN LOGISTIQUE", "KERVIN SAS", "BREIZH DIGITAL")
_SUPPLIERS = ("METRO FRANCE", "OVH SAS", "BURO+ NANTES", "ADOBE SYSTEMS", "LOCAPRO LEASING")
_MOTIVES = ("REMBOURSEMENT", "CADEAU", "LOYER", "PARTAGE RESTO", "VACANCES", "COURSES")
_MONTHS = (
    "JANVIER",
    "FEVRIER",
    "MARS",
    "AVRIL",
    "MAI",
    "JUIN",
    "JUILLET",
    "AOUT",
    "SEPTEMBRE",
    "OCTOBRE",
    "NOVEMBRE",
    "DECEMBRE",
)


@dataclass(frozen=True, slots=True)
class Entry:
    """One generated transaction, independent of the API version that renders it."""

    entry_reference: str
    amount: str
    credit_debit: str
    imputation_date: date
    value_date: date
    transaction_date: date
    remittance: tuple[str, ...]

    def is_pending(self, today: date) -> bool:
        """Pending while its imputation date is today or yesterday."""
        return (today - self.imputation_date).days < PENDING_DAYS


@dataclass(frozen=True, slots=True)
class _Draft:
    credit_debit: str
    cents: int
    remittance: tuple[str, ...]
    transaction_lag: int = 0
    value_lag: int = 0


def _amount(rng: random.Random, low: int, high: int) -> int:
    """Cents between ``low`` and ``high`` euros."""
    return rng.randint(low * 100, high * 100)


def _card(rng: random.Random, day: date) -> _Draft:
    merchant, city = rng.choice(_MERCHANTS)
    lag = rng.randint(0, 3)
    bought = day - timedelta(days=lag)
    return _Draft(
        DBIT,
        _amount(rng, 3, 140),
        (f"CB {merchant} {bought:%d/%m}", f"FACTURE CARTE DU {bought:%d%m%y} {merchant} {city} CARTE 4970XXXXXXXX4242"),
        transaction_lag=lag,
    )


def _direct_debit(rng: random.Random, day: date) -> _Draft:
    creditor = rng.choice(_CREDITORS)
    mandate = rng.randint(100000, 999999)
    return _Draft(
        DBIT,
        _amount(rng, 9, 160),
        (f"PRLV SEPA {creditor}", f"ECH/{day:%d%m%y} ID EMETTEUR/FR{mandate % 97:02d}ZZZ{mandate} MDT/{mandate}"),
    )


def _withdrawal(rng: random.Random, day: date) -> _Draft:
    _, city = rng.choice(_MERCHANTS)
    return _Draft(DBIT, rng.choice((20, 40, 50, 60, 80, 100)) * 100, (f"RETRAIT DAB {day:%d/%m} {city}",))


def _transfer_out(rng: random.Random, _day: date) -> _Draft:
    return _Draft(DBIT, _amount(rng, 10, 300), (f"VIR SEPA {rng.choice(_PEOPLE)}", f"MOTIF {rng.choice(_MOTIVES)}"))


def _transfer_in(rng: random.Random, _day: date) -> _Draft:
    return _Draft(
        CRDT,
        _amount(rng, 10, 250),
        (f"VIR INST RECU {rng.choice(_PEOPLE)}", f"MOTIF {rng.choice(_MOTIVES)}"),
        value_lag=rng.randint(0, 1),
    )


def _refund(rng: random.Random, _day: date) -> _Draft:
    merchant, _ = rng.choice(_MERCHANTS)
    return _Draft(CRDT, _amount(rng, 5, 80), (f"AVOIR CB {merchant}",))


def _cheque(rng: random.Random, _day: date) -> _Draft:
    return _Draft(DBIT, _amount(rng, 15, 400), (f"CHEQUE {rng.randint(1000000, 9999999)}",))


def _customer_payment(rng: random.Random, day: date) -> _Draft:
    return _Draft(
        CRDT,
        _amount(rng, 150, 4800),
        (f"VIR SEPA RECU {rng.choice(_CUSTOMERS)}", f"FACTURE F{day:%y%m}-{rng.randint(100, 999)}"),
        value_lag=rng.randint(0, 1),
    )


def _supplier_payment(rng: random.Random, day: date) -> _Draft:
    return _Draft(
        DBIT,
        _amount(rng, 40, 2500),
        (f"VIR SEPA {rng.choice(_SUPPLIERS)}", f"REGLEMENT FACTURE {day:%Y}-{rng.randint(1000, 9999)}"),
    )


def _cheque_deposit(rng: random.Random, _day: date) -> _Draft:
    count = rng.randint(1, 6)
    return _Draft(
        CRDT, _amount(rng, 60, 1500), (f"REMISE CHEQUES {count} CHQ", f"BORDEREAU {rng.randint(10000, 99999)}")
    )


def _fees(rng: random.Random, day: date) -> _Draft:
    return _Draft(DBIT, _amount(rng, 1, 12), (f"FRAIS TENUE DE COMPTE {day:%m/%Y}",))


_Maker = Callable[[random.Random, date], _Draft]

_TEMPLATES: dict[HistoryProfile, tuple[_Maker, ...]] = {
    # Weights by repetition: card payments dominate retail accounts, transfers dominate professional ones.
    HistoryProfile.RETAIL: (
        *(_card,) * 6,
        *(_direct_debit,) * 2,
        _withdrawal,
        _transfer_out,
        _transfer_in,
        _refund,
        _cheque,
    ),
    HistoryProfile.PRO: (
        *(_customer_payment,) * 4,
        *(_supplier_payment,) * 3,
        *(_card,) * 2,
        _direct_debit,
        _cheque_deposit,
        _fees,
    ),
    HistoryProfile.CARD: (*(_card,) * 19, _refund),
    # Card takings and payouts of a merchant: mostly credits, a few suppliers and fees.
    HistoryProfile.BULK: (*(_customer_payment,) * 6, *(_refund,) * 2, _supplier_payment, _fees),
}


def _salary(day: date) -> _Draft:
    return _Draft(
        CRDT,
        248_650 + day.month * 1_000,
        ("VIR SEPA RECU ACME INDUSTRIES SAS", f"SALAIRE {_MONTHS[day.month - 1]} {day.year}"),
    )


def _format_cents(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def _day_count(rng: random.Random, profile: HistoryProfile, day: date) -> int:
    if profile is HistoryProfile.BULK:  # a fixed count, so that the 90-day window is always 10,000
        return BULK_PER_DAY + (1 if day.toordinal() % BULK_EXTRA_EVERY == 0 else 0)
    return rng.randint(MIN_PER_DAY, MAX_PER_DAY)


@lru_cache(maxsize=65_536)
def day_entries(resource_id: str, profile: HistoryProfile, day: date) -> tuple[Entry, ...]:
    """All transactions of one account imputed on one day, always the same for the same inputs."""
    rng = random.Random(f"{resource_id}|{day.isoformat()}")  # noqa: S311 - test data, not security
    drafts = [rng.choice(_TEMPLATES[profile])(rng, day) for _ in range(_day_count(rng, profile, day))]
    if profile is HistoryProfile.RETAIL and day.day == SALARY_DAY:
        drafts.append(_salary(day))
    tag = hashlib.sha256(resource_id.encode()).hexdigest()[:6].upper()
    return tuple(
        Entry(
            entry_reference=f"{day:%Y%m%d}{index:03d}{tag}",
            amount=_format_cents(draft.cents),
            credit_debit=draft.credit_debit,
            imputation_date=day,
            value_date=day + timedelta(days=draft.value_lag),
            transaction_date=day - timedelta(days=draft.transaction_lag),
            remittance=draft.remittance,
        )
        for index, draft in enumerate(drafts, start=1)
    )


@lru_cache(maxsize=512)
def account_history(resource_id: str, profile: HistoryProfile, today: date) -> tuple[Entry, ...]:
    """The account's last :data:`HISTORY_DAYS` days of transactions, newest first."""
    entries: list[Entry] = []
    for offset in range(HISTORY_DAYS):
        entries.extend(reversed(day_entries(resource_id, profile, today - timedelta(days=offset))))
    return tuple(entries)
