"""The bank gateways the use cases depend on (``aisp.logic.ports``), over the per-bank STET clients.

They hide which client, host and credentials serve a bank code, and the wire: the logic asks "exchange this code at
bank 13807" and gets :class:`~aisp.models.bank.IssuedTokens` (mapped by :mod:`aisp.stet.mapping`) or a typed
:class:`~aisp.errors.UpstreamError`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import TYPE_CHECKING

from aisp.banks import authorize_base_url
from aisp.stet import mapping
from aisp.stet.client import PsuContext, build_authorization_url
from aisp.stet.factory import BankClients

if TYPE_CHECKING:
    from aisp.models.bank import (
        BankAccounts,
        BankBalance,
        BankBeneficiary,
        BankIdentity,
        IssuedTokens,
        TransactionsPage,
    )
    from aisp.models.connection import ConsentSnapshot
    from aisp.models.psu import PsuInfo

__all__ = ["StetAccountGateway", "StetBankGateway"]


class StetBankGateway:
    """OAuth operations of the BPCE establishments, one :class:`~aisp.stet.BankClient` per bank."""

    def __init__(self, clients: Callable[[], BankClients]) -> None:
        self._clients = clients

    def authorization_url(
        self, bank_code: str, *, redirect_uri: str, state: str, code_challenge: str | None = None
    ) -> str:
        """The login screen URL for ``bank_code`` (client id from the credentials secret; PKCE when challenged)."""
        bank = self._clients().registry.get(bank_code)
        credentials = self._clients().credentials()
        return build_authorization_url(
            authorize_base_url(bank, self._clients().settings),
            client_id=credentials.client_id,
            redirect_uri=redirect_uri,
            state=state,
            code_challenge=code_challenge,
            oauth_path=bank.oauth_path,
        )

    def exchange_code(
        self, bank_code: str, *, code: str, redirect_uri: str, code_verifier: str | None = None
    ) -> IssuedTokens:
        """``grant_type=authorization_code`` at the bank's token endpoint (with PKCE's verifier when given)."""
        issued = self._clients().get(bank_code).exchange_code(code, redirect_uri, code_verifier=code_verifier)
        return mapping.issued_tokens(issued)

    def refresh(self, bank_code: str, *, refresh_token: str) -> IssuedTokens:
        """``grant_type=refresh_token`` at the bank's token endpoint."""
        return mapping.issued_tokens(self._clients().get(bank_code).refresh(refresh_token))

    def revoke(self, bank_code: str, *, token: str, token_type_hint: str | None = None) -> None:
        """RFC 7009 revocation (BPCE: revoking either token revokes both)."""
        self._clients().get(bank_code).revoke(token, token_type_hint=token_type_hint)


def _psu_context(psu: PsuInfo | None) -> PsuContext | None:
    return None if psu is None else PsuContext(**psu.as_kwargs())


class StetAccountGateway:
    """The AISP data calls of the BPCE establishments (``aisp.logic.ports.AccountDataGateway``), one client per
    bank; a :class:`~aisp.models.psu.PsuInfo` becomes the request's ``PSU-*`` headers."""

    def __init__(self, clients: Callable[[], BankClients]) -> None:
        self._clients = clients

    def get_accounts(self, bank_code: str, *, access_token: str, psu: PsuInfo | None) -> BankAccounts:
        """GET /accounts."""
        return mapping.accounts(self._clients().get(bank_code).get_accounts(access_token, _psu_context(psu)))

    def put_consents(self, bank_code: str, *, access_token: str, consent: ConsentSnapshot, psu: PsuInfo | None) -> None:
        """PUT /consents with the STET ``Access`` body of the consent."""
        body = mapping.consent_request(consent)
        self._clients().get(bank_code).put_consents(access_token, body, _psu_context(psu))

    def get_balances(
        self, bank_code: str, *, access_token: str, account_id: str, psu: PsuInfo | None
    ) -> list[BankBalance]:
        """GET /accounts/{account_id}/balances."""
        found = self._clients().get(bank_code).get_balances(access_token, account_id, _psu_context(psu))
        return [mapping.balance(item) for item in found.balances]

    def get_transactions_page(
        self,
        bank_code: str,
        *,
        access_token: str,
        account_id: str,
        psu: PsuInfo | None,
        date_from: date | None = None,
        date_to: date | None = None,
        page_url: str | None = None,
    ) -> TransactionsPage:
        """One page of transactions; ``page_url`` is re-checked to be on the bank's origin by the client."""
        page = (
            self._clients()
            .get(bank_code)
            .get_transactions_page(
                access_token,
                account_id,
                psu=_psu_context(psu),
                date_from=date_from,
                date_to=date_to,
                page_url=page_url,
            )
        )
        return mapping.transactions_page(page, bank_code=bank_code)

    def get_trusted_beneficiaries(
        self, bank_code: str, *, access_token: str, psu: PsuInfo | None
    ) -> list[BankBeneficiary]:
        """GET /trusted-beneficiaries (none → empty list)."""
        found = self._clients().get(bank_code).get_trusted_beneficiaries(access_token, _psu_context(psu))
        return [mapping.beneficiary(item) for item in found.beneficiaries]

    def get_end_user_identity(self, bank_code: str, *, access_token: str, psu: PsuInfo | None) -> BankIdentity | None:
        """GET /end-user-identity."""
        identity = self._clients().get(bank_code).get_end_user_identity(access_token, _psu_context(psu))
        return None if identity is None else mapping.identity(identity)
