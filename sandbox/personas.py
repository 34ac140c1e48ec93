"""Test customers (personas) of each sandbox bank: identifiers, OTPs, accounts, balances and initial consents.

Marc (``D0999990I0``) and Tech-N Co (``D0999993I0``) are the personas of the 89C3 sandbox guide, with the exact
accounts, IBANs, resource ids, names and balances it shows. The others exist to exercise the cases the guide does not
show (card account, no eligible account, consent revoked at the bank, failing SCA) and the other bank codes.
Amounts are strings, as BPCE sends them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from sandbox.banks import french_iban

DEFAULT_OTP = "12345678"


class HistoryProfile(StrEnum):
    """Which kind of transaction history the generator produces for an account."""

    RETAIL = "retail"
    PRO = "pro"
    CARD = "card"
    BULK = "bulk"  # a merchant's collection account: 10,000 transactions over the 90 days (the benchmarks')


class ReferenceDay(StrEnum):
    """The day a balance refers to, relative to the sandbox's current date (Europe/Paris)."""

    TODAY = "today"
    YESTERDAY = "yesterday"
    NONE = "none"


@dataclass(frozen=True, slots=True, kw_only=True)
class Balance:
    """One balance of an account. ``name`` may contain ``{date}`` (dd/mm/yyyy of the reference date)."""

    balance_type: str
    name: str
    amount: str
    reference: ReferenceDay = ReferenceDay.NONE


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    """A payment account (CACC) or a deferred-debit card (CARD) of a persona."""

    resource_id: str
    name: str
    product: str
    details: str
    usage: str = "PRIV"
    cash_account_type: str = "CACC"
    psu_status: str = "Account Holder"
    currency: str = "EUR"
    iban: str | None = None
    card_pan: str | None = None
    linked_account: str | None = None
    balances: tuple[Balance, ...] = ()
    profile: HistoryProfile = HistoryProfile.RETAIL

    @property
    def key(self) -> str:
        """How PUT /consents and the quotas identify the account: its IBAN, or its masked PAN for a card."""
        key = self.iban or self.card_pan
        if key is None:  # pragma: no cover - guarded by the persona tests
            raise ValueError(self.resource_id)
        return key


@dataclass(frozen=True, slots=True, kw_only=True)
class Beneficiary:
    """A trusted beneficiary of a persona."""

    beneficiary_id: str
    name: str
    iban: str
    bic: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Consent:
    """The PSU's detailed (BPCE "mixed") consent: accounts by key for balances and transactions, plus two flags."""

    balances: frozenset[str] = frozenset()
    transactions: frozenset[str] = frozenset()
    psu_identity: bool = False
    trusted_beneficiaries: bool = False

    @property
    def is_empty(self) -> bool:
        """No account consented at all (the state before the first PUT /consents)."""
        return not self.balances and not self.transactions


NO_CONSENT = Consent()


@dataclass(frozen=True, slots=True, kw_only=True)
class Persona:
    """A test customer of one bank.

    Parameters
    ----------
    identifier
        Remote banking identifier typed on the identification screen.
    otp
        SMS code accepted on the authentication screen; ``None`` means every code is refused.
    connected_psu
        Last name and first name, as BPCE reports it (``connectedPsu``).
    refresh_revoked
        The PSU revoked the TPP's access in their online banking right after logging in: the first access token
        works until it expires, every refresh answers ``invalid_grant``.
    purpose
        What the persona is for (README and screens).
    """

    identifier: str
    connected_psu: str
    first_name: str | None
    last_name: str
    name_prefix: str | None
    purpose: str
    otp: str | None = DEFAULT_OTP
    accounts: tuple[Account, ...] = ()
    beneficiaries: tuple[Beneficiary, ...] = ()
    initial_consent: Consent = field(default=NO_CONSENT)
    refresh_revoked: bool = False


def _bp_balances(valu: str, clbd: str, othr: str) -> tuple[Balance, ...]:
    return (
        Balance(balance_type="VALU", name="Solde en Valeur", amount=valu, reference=ReferenceDay.TODAY),
        Balance(balance_type="CLBD", name="Solde Comptable", amount=clbd, reference=ReferenceDay.YESTERDAY),
        Balance(balance_type="OTHR", name="Solde TP", amount=othr),
    )


def _ce_balances(valu: str, clbd: str) -> tuple[Balance, ...]:
    return (
        Balance(balance_type="VALU", name="Solde comptable au {date}", amount=valu, reference=ReferenceDay.TODAY),
        Balance(balance_type="CLBD", name="Solde comptable au {date}", amount=clbd, reference=ReferenceDay.YESTERDAY),
    )


def _bp_account(
    bank_code: str,
    branch: str,
    number: str,
    *,
    name: str,
    product: str,
    balances: tuple[Balance, ...],
    usage: str = "PRIV",
    psu_status: str = "Account Holder",
    profile: HistoryProfile = HistoryProfile.RETAIL,
) -> Account:
    prefix = "038" if bank_code == "13807" else "021"
    return Account(
        resource_id=f"{prefix}-CPT{number}",
        iban=french_iban(bank_code, branch, number),
        name=name,
        product=product,
        details=product,
        usage=usage,
        psu_status=psu_status,
        balances=balances,
        profile=profile,
    )


def _everything(*accounts: Account) -> Consent:
    keys = frozenset(account.key for account in accounts)
    return Consent(balances=keys, transactions=keys, psu_identity=True, trusted_beneficiaries=True)


# --- 13807: B.P Grand Ouest / CMM Grand Ouest (the 89C3 sandbox guide) -------------------------------------------

_MARC_ACCOUNTS = (
    _bp_account(
        "13807",
        "00804",
        "30019654051",
        name="Compte perso",
        product="COMPTE CHEQUE",
        balances=_bp_balances("4321.95", "4179.95", "4348.95"),
    ),
    _bp_account(
        "13807",
        "00804",
        "30019654052",
        name="Retrait et Cheques",
        product="COMPTE CHEQUE",
        balances=_bp_balances("459.56", "459.56", "459.56"),
    ),
    _bp_account(
        "13807",
        "00804",
        "30019654053",
        name="Compte mensualités",
        product="COMPTE CHEQUE",
        balances=_bp_balances("2165.50", "2165.50", "2165.50"),
    ),
)

_TECHN_ACCOUNT = _bp_account(
    "13807",
    "00804",
    "30019654091",
    name="Tech-N Co",
    product="COMPTE COURANT",
    usage="ORGA",
    balances=_bp_balances("18250.40", "17984.10", "18250.40"),
    profile=HistoryProfile.PRO,
)

_SOPHIE_CASH = _bp_account(
    "13807",
    "00804",
    "30019654061",
    name="Compte courant",
    product="COMPTE CHEQUE",
    balances=_bp_balances("1532.18", "1498.73", "1532.18"),
)
_SOPHIE_CARD = Account(
    resource_id="038-CB497010XXXXXX4242",
    card_pan="497010XXXXXX4242",
    cash_account_type="CARD",
    linked_account=_SOPHIE_CASH.resource_id,
    name="VISA PREMIER DURAND SOPHIE",
    product="VISA PREMIER",
    details="CARTE A DEBIT DIFFERE",
    balances=(Balance(balance_type="OTHR", name="Encours carte a debit differe", amount="-312.40"),),
    profile=HistoryProfile.CARD,
)

_JULIE_ACCOUNT = _bp_account(
    "13807",
    "00804",
    "30019654071",
    name="Compte joint",
    product="COMPTE CHEQUE",
    psu_status="Co-account Holder",
    balances=_bp_balances("812.33", "790.12", "812.33"),
)

_BRUNO_ACCOUNT = _bp_account(
    "13807",
    "00804",
    "30019654081",
    name="Compte perso",
    product="COMPTE CHEQUE",
    balances=_bp_balances("96.10", "96.10", "96.10"),
)

_BULK_ACCOUNT = _bp_account(
    "13807",
    "00804",
    "30019654099",
    name="Encaissements",
    product="COMPTE COURANT",
    usage="ORGA",
    balances=_bp_balances("98412.37", "97120.55", "98412.37"),
    profile=HistoryProfile.BULK,
)

PERSONAS_13807 = (
    Persona(
        identifier="D0999990I0",
        connected_psu="MALLOW MARC",
        first_name="Marc",
        last_name="MALLOW",
        name_prefix="MIST",
        purpose="Seed persona: three CACC accounts, consent already given (balances shown on GET /accounts)",
        accounts=_MARC_ACCOUNTS,
        beneficiaries=(
            Beneficiary(
                beneficiary_id="BEN-0001",
                name="MALLOW CLAIRE",
                iban=french_iban("10207", "00221", "04021234599"),
                bic="CCBPFRPPMTG",
            ),
            Beneficiary(
                beneficiary_id="BEN-0002",
                name="SCI LES TILLEULS",
                iban=french_iban("17515", "90000", "08765432101"),
                bic="CEPAFRPP751",
            ),
        ),
        initial_consent=_everything(*_MARC_ACCOUNTS),
    ),
    Persona(
        identifier="D0999993I0",
        connected_psu="TECH-N CO",
        first_name=None,
        last_name="TECH-N CO",
        name_prefix=None,
        purpose="Seed persona: one professional (ORGA) account, no consent yet (PUT /consents needed)",
        accounts=(_TECHN_ACCOUNT,),
    ),
    Persona(
        identifier="D0999991I0",
        connected_psu="DURAND SOPHIE",
        first_name="Sophie",
        last_name="DURAND",
        name_prefix="MADM",
        purpose="Deferred-debit card: a CACC account and its CARD account (linkedAccount, CPAN), both consented",
        accounts=(_SOPHIE_CASH, _SOPHIE_CARD),
        initial_consent=_everything(_SOPHIE_CASH, _SOPHIE_CARD),
    ),
    Persona(
        identifier="D0999994I0",
        connected_psu="PERRIN PAUL",
        first_name="Paul",
        last_name="PERRIN",
        name_prefix="MIST",
        purpose="No eligible account: GET /accounts answers 404 NAAC",
    ),
    Persona(
        identifier="D0999995I0",
        connected_psu="LEROY JULIE",
        first_name="Julie",
        last_name="LEROY",
        name_prefix="MADM",
        purpose="Access revoked in online banking: first access token works, every refresh is invalid_grant",
        accounts=(_JULIE_ACCOUNT,),
        initial_consent=_everything(_JULIE_ACCOUNT),
        refresh_revoked=True,
    ),
    Persona(
        identifier="D0999996I0",
        connected_psu="MARTIN BRUNO",
        first_name="Bruno",
        last_name="MARTIN",
        name_prefix="MIST",
        purpose="SCA always fails: every OTP is refused, the flow locks after 3 failures",
        otp=None,
        accounts=(_BRUNO_ACCOUNT,),
    ),
    Persona(
        identifier="D0999997I0",
        connected_psu="MARCHE OUEST SAS",
        first_name=None,
        last_name="MARCHE OUEST SAS",
        name_prefix=None,
        purpose="Large history: one ORGA account with 10,000 transactions (100 pages of 100), consent given",
        accounts=(_BULK_ACCOUNT,),
        initial_consent=_everything(_BULK_ACCOUNT),
    ),
)

# --- 10207: Banque Populaire Rives de Paris ----------------------------------------------------------------------

_LEA_ACCOUNTS = (
    _bp_account(
        "10207",
        "00221",
        "04021234501",
        name="Compte cheque",
        product="COMPTE CHEQUE",
        balances=_bp_balances("2750.00", "2698.45", "2750.00"),
    ),
    _bp_account(
        "10207",
        "00221",
        "04021234502",
        name="Compte epargne courante",
        product="COMPTE CHEQUE",
        balances=_bp_balances("10400.00", "10400.00", "10400.00"),
    ),
)

PERSONAS_10207 = (
    Persona(
        identifier="D1020701I0",
        connected_psu="MOREAU LEA",
        first_name="Léa",
        last_name="MOREAU",
        name_prefix="MISS",
        purpose="Second bank: two CACC accounts, consent given (own tokens, own IBANs)",
        accounts=_LEA_ACCOUNTS,
        initial_consent=_everything(*_LEA_ACCOUNTS),
    ),
    Persona(
        identifier="D1020702I0",
        connected_psu="BOULANGERIE PETIT",
        first_name=None,
        last_name="BOULANGERIE PETIT",
        name_prefix=None,
        purpose="Second bank, professional account without consent",
        accounts=(
            _bp_account(
                "10207",
                "00221",
                "04021234577",
                name="Boulangerie Petit",
                product="COMPTE COURANT",
                usage="ORGA",
                balances=_bp_balances("5120.75", "4980.75", "5120.75"),
                profile=HistoryProfile.PRO,
            ),
        ),
    ),
)

# --- 17515: Caisse d'Epargne Ile-de-France (no identity, no beneficiaries) ------------------------------------------

_HUGO_ACCOUNT = Account(
    resource_id="175159000008123456789",
    iban=french_iban("17515", "90000", "08123456789"),
    name="Compte de depot",
    product="COMPTE DE DEPOT",
    details="COMPTE DE DEPOT",
    balances=_ce_balances("640.20", "611.95"),
)

PERSONAS_17515 = (
    Persona(
        identifier="D1751501I0",
        connected_psu="BERNARD HUGO",
        first_name="Hugo",
        last_name="BERNARD",
        name_prefix="MIST",
        purpose="Caisse d'Epargne: one account, consent given; identity and beneficiaries not implemented (501)",
        accounts=(_HUGO_ACCOUNT,),
        initial_consent=Consent(
            balances=frozenset({_HUGO_ACCOUNT.key}),
            transactions=frozenset({_HUGO_ACCOUNT.key}),
        ),
    ),
)

PERSONAS: dict[str, tuple[Persona, ...]] = {
    "13807": PERSONAS_13807,
    "10207": PERSONAS_10207,
    "17515": PERSONAS_17515,
}
