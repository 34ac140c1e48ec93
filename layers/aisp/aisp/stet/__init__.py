"""STET PSD2 AISP client for BPCE 89C3: OAuth2 token calls, signed account-information calls, wire models.

Public surface: :class:`BankClient`, :class:`PsuContext`, :func:`build_authorization_url` and the models of
:mod:`aisp.stet.schemas`.
"""

from __future__ import annotations

from aisp.stet.client import BankClient, PsuContext, build_authorization_url
from aisp.stet.schemas import (
    Account,
    AccountIdentification,
    AccountList,
    AmountType,
    Balance,
    BalanceList,
    BalanceType,
    Beneficiary,
    BeneficiaryList,
    CashAccountType,
    ConsentRequest,
    CreditDebitIndicator,
    EndUserIdentity,
    Link,
    Links,
    TokenResponse,
    Transaction,
    TransactionPage,
    TransactionStatus,
)

__all__ = [
    "Account",
    "AccountIdentification",
    "AccountList",
    "AmountType",
    "Balance",
    "BalanceList",
    "BalanceType",
    "BankClient",
    "Beneficiary",
    "BeneficiaryList",
    "CashAccountType",
    "ConsentRequest",
    "CreditDebitIndicator",
    "EndUserIdentity",
    "Link",
    "Links",
    "PsuContext",
    "TokenResponse",
    "Transaction",
    "TransactionPage",
    "TransactionStatus",
    "build_authorization_url",
]
