"""Deterministic transaction history of every sandbox account, evolving with the sandbox clock.

Each calendar day of each account gets its transactions from a random generator seeded with the account's resource
id and the date, so a transaction keeps its id, amount and text from one run (and one day) to the next, and the
90-day window slides as the sandbox clock moves. A transaction is pending (``PDNG``, no booking date) on its day and
the next; two days after it, it meets its fate, drawn from its own seed: booked under the same reference, or (card
payments only) booked under a new reference, maybe on a later day or for another amount, or released (gone). The
rules and their shares: ``sandbox/README.md`` (How the history evolves).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, timedelta
from enum import StrEnum
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
# Booked references of settled card payments: the pending one's day and index + SETTLED_INDEX (days hold < 500).
SETTLED_INDEX = 500

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


class Fate(StrEnum):
    """What becomes of a pending transaction :data:`PENDING_DAYS` after its day."""

    BOOKED = "booked"  # booked under the same reference, on its day (every transaction but card payments)
    REBOOKED = "rebooked"  # booked under a new reference, same day, amount and text
    REDATED = "redated"  # booked under a new reference one or two days after its expected booking date
    REPRICED = "repriced"  # booked under a new reference for another amount (a tip, a currency conversion)
    RELEASED = "released"  # never booked: the authorisation is released and the pending item vanishes


# The fate of a card payment, by its share in percent (other transactions are always BOOKED).
CARD_FATES: tuple[tuple[Fate, int], ...] = (
    (Fate.BOOKED, 50),
    (Fate.REBOOKED, 20),
    (Fate.REDATED, 12),
    (Fate.REPRICED, 8),
    (Fate.RELEASED, 10),
)
MAX_REDATE_DAYS = 2
TIP_PERCENT = (5, 20)  # REPRICED, half of them: a tip of 5 to 20 % more
CONVERSION_BASIS_POINTS = (50, 300)  # the other half: a conversion 0.5 to 3 % more or less
TIP_SHARE = 0.5


@dataclass(frozen=True, slots=True)
class Entry:
    """One listed transaction, independent of the API version that renders it.

    ``imputation_date`` is the booking date of a booked transaction and the expected one of a pending transaction;
    it is the day the listing files it under (and ``dateFrom``/``dateTo`` filter on).
    """

    entry_reference: str
    amount: str
    credit_debit: str
    imputation_date: date
    value_date: date
    transaction_date: date
    remittance: tuple[str, ...]
    pending: bool


@dataclass(frozen=True, slots=True)
class Settlement:
    """One transaction from its pending listing to its fate."""

    fate: Fate
    pending: Entry  # as listed on its day and the next
    booked: Entry | None  # as listed from :attr:`resolved_on` on; ``None`` when released

    @property
    def resolved_on(self) -> date:
        """The first sandbox day on which it is no longer pending."""
        return self.pending.imputation_date + timedelta(days=PENDING_DAYS)


@dataclass(frozen=True, slots=True)
class _Draft:
    credit_debit: str
    cents: int
    remittance: tuple[str, ...]
    transaction_lag: int = 0
    value_lag: int = 0
    card: bool = False


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
        card=True,
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


def _card_fate(rng: random.Random) -> Fate:
    roll = rng.randrange(100)
    for fate, share in CARD_FATES:
        if roll < share:
            return fate
        roll -= share
    raise AssertionError("CARD_FATES must add up to 100")  # pragma: no cover - checked by the tests


def _repriced(rng: random.Random, cents: int) -> int:
    """The booked amount of a REPRICED card payment: a tip, or a conversion at another rate."""
    if rng.random() < TIP_SHARE:
        change = cents * rng.randint(*TIP_PERCENT) // 100
    else:
        change = cents * rng.randint(*CONVERSION_BASIS_POINTS) // 10_000 * rng.choice((-1, 1))
    return cents + (change or 1)


def _settle(pending: Entry, seed: str, reference: str, cents: int) -> Settlement:
    """The fate of one pending card payment, drawn from its own ``seed``."""
    rng = random.Random(seed)  # noqa: S311 - test data, not security
    fate = _card_fate(rng)
    booked: Entry | None = replace(pending, pending=False)
    if fate is Fate.REBOOKED:
        booked = replace(pending, entry_reference=reference, pending=False)
    elif fate is Fate.REDATED:
        day = pending.imputation_date + timedelta(days=rng.randint(1, MAX_REDATE_DAYS))
        booked = replace(pending, entry_reference=reference, imputation_date=day, value_date=day, pending=False)
    elif fate is Fate.REPRICED:
        booked = replace(pending, entry_reference=reference, amount=_format_cents(_repriced(rng, cents)), pending=False)
    elif fate is Fate.RELEASED:
        booked = None
    return Settlement(fate, pending, booked)


@lru_cache(maxsize=65_536)
def day_settlements(resource_id: str, profile: HistoryProfile, day: date) -> tuple[Settlement, ...]:
    """Every transaction of one account whose day is ``day``, with its fate: the same for the same inputs."""
    rng = random.Random(f"{resource_id}|{day.isoformat()}")  # noqa: S311 - test data, not security
    drafts = [rng.choice(_TEMPLATES[profile])(rng, day) for _ in range(_day_count(rng, profile, day))]
    if profile is HistoryProfile.RETAIL and day.day == SALARY_DAY:
        drafts.append(_salary(day))
    tag = hashlib.sha256(resource_id.encode()).hexdigest()[:6].upper()
    settlements: list[Settlement] = []
    stamp = f"{day:%Y%m%d}"
    for index, draft in enumerate(drafts, start=1):
        reference = f"{stamp}{index:03d}{tag}"
        fields = (
            _format_cents(draft.cents),
            draft.credit_debit,
            day,
            day + timedelta(days=draft.value_lag),
            day - timedelta(days=draft.transaction_lag),
            draft.remittance,
        )
        pending = Entry(reference, *fields, pending=True)
        if draft.card:  # its own seed, apart from the day's: the fates leave every transaction's content as it was
            seed = f"{resource_id}|{day.isoformat()}|{index}|fate"
            settlements.append(_settle(pending, seed, f"{stamp}{index + SETTLED_INDEX:03d}{tag}", draft.cents))
        else:
            settlements.append(Settlement(Fate.BOOKED, pending, Entry(reference, *fields, pending=False)))
    return tuple(settlements)


def _listed_on(resource_id: str, profile: HistoryProfile, day: date, today: date) -> list[Entry]:
    """What the account lists under ``day`` on sandbox day ``today``, oldest first.

    Transactions booked on ``day`` whose pending one is settled by ``today`` (of ``day`` and of the
    :data:`MAX_REDATE_DAYS` days before), then, while ``day`` is recent, its own transactions, pending.
    """
    listed: list[Entry] = []
    for lag in range(MAX_REDATE_DAYS, -1, -1):
        origin = day - timedelta(days=lag)
        if (today - origin).days < PENDING_DAYS:
            continue
        listed.extend(
            settlement.booked
            for settlement in day_settlements(resource_id, profile, origin)
            if settlement.booked is not None and settlement.booked.imputation_date == day
        )
    if (today - day).days < PENDING_DAYS:
        listed.extend(settlement.pending for settlement in day_settlements(resource_id, profile, day))
    return listed


@lru_cache(maxsize=512)
def account_history(resource_id: str, profile: HistoryProfile, today: date) -> tuple[Entry, ...]:
    """The account's last :data:`HISTORY_DAYS` days of transactions as listed on sandbox day ``today``, newest
    first (within a day, pending ones first)."""
    entries: list[Entry] = []
    for offset in range(HISTORY_DAYS):
        entries.extend(reversed(_listed_on(resource_id, profile, today - timedelta(days=offset), today)))
    return tuple(entries)
