"""The bank gateway the use cases depend on (``aisp.logic.ports.BankGateway``), over the cached per-bank clients.

It hides which client, host and credentials serve a bank code: the logic asks "exchange this code at bank 13807"
and gets a :class:`~aisp.stet.TokenResponse` or a typed :class:`~aisp.errors.UpstreamError`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import TYPE_CHECKING

from aisp.banks import authorize_base_url
from aisp.stet.client import PsuContext, build_authorization_url
from aisp.stet.factory import BankClients
from aisp.stet.schemas import (
    AccountList,
    BalanceList,
    BeneficiaryList,
    ConsentRequest,
    EndUserIdentity,
    TokenResponse,
    TransactionPage,
)

if TYPE_CHECKING:
    from aisp.models.api import SubmitConsentRequest
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
    ) -> TokenResponse:
        """``grant_type=authorization_code`` at the bank's token endpoint (with PKCE's verifier when given)."""
        return self._clients().get(bank_code).exchange_code(code, redirect_uri, code_verifier=code_verifier)

    def refresh(self, bank_code: str, *, refresh_token: str) -> TokenResponse:
        """``grant_type=refresh_token`` at the bank's token endpoint."""
        return self._clients().get(bank_code).refresh(refresh_token)

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

    def get_accounts(self, bank_code: str, *, access_token: str, psu: PsuInfo | None) -> AccountList:
        """GET /accounts."""
        return self._clients().get(bank_code).get_accounts(access_token, _psu_context(psu))

    def put_consents(
        self, bank_code: str, *, access_token: str, consent: SubmitConsentRequest, psu: PsuInfo | None
    ) -> None:
        """PUT /consents with the STET ``Access`` body built from the validated request."""
        body = ConsentRequest(
            balances=[item for item in consent.balances if isinstance(item, str)],
            transactions=[item for item in consent.transactions if isinstance(item, str)],
            card_balances=[item.card for item in consent.balances if not isinstance(item, str)],
            card_transactions=[item.card for item in consent.transactions if not isinstance(item, str)],
            psu_identity=consent.psu_identity,
            trusted_beneficiaries=consent.trusted_beneficiaries,
        )
        self._clients().get(bank_code).put_consents(access_token, body, _psu_context(psu))

    def get_balances(self, bank_code: str, *, access_token: str, account_id: str, psu: PsuInfo | None) -> BalanceList:
        """GET /accounts/{account_id}/balances."""
        return self._clients().get(bank_code).get_balances(access_token, account_id, _psu_context(psu))

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
    ) -> TransactionPage:
        """One page of transactions; ``page_url`` is re-checked to be on the bank's origin by the client."""
        return (
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

    def get_trusted_beneficiaries(self, bank_code: str, *, access_token: str, psu: PsuInfo | None) -> BeneficiaryList:
        """GET /trusted-beneficiaries."""
        return self._clients().get(bank_code).get_trusted_beneficiaries(access_token, _psu_context(psu))

    def get_end_user_identity(
        self, bank_code: str, *, access_token: str, psu: PsuInfo | None
    ) -> EndUserIdentity | None:
        """GET /end-user-identity."""
        return self._clients().get(bank_code).get_end_user_identity(access_token, _psu_context(psu))
