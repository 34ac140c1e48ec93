"""The bank gateway the use cases depend on (``aisp.logic.ports.BankGateway``), over the cached per-bank clients.

It hides which client, host and credentials serve a bank code: the logic asks "exchange this code at bank 13807"
and gets a :class:`~aisp.stet.TokenResponse` or a typed :class:`~aisp.errors.UpstreamError`.
"""

from __future__ import annotations

from aisp.banks import authorize_base_url, get_registry
from aisp.credentials import get_bank_credentials
from aisp.settings import BankSettings, load_settings
from aisp.stet.client import build_authorization_url
from aisp.stet.factory import get_bank_client
from aisp.stet.schemas import TokenResponse

__all__ = ["StetBankGateway"]


class StetBankGateway:
    """OAuth operations of the BPCE establishments, one cached :class:`~aisp.stet.BankClient` per bank."""

    def authorization_url(self, bank_code: str, *, redirect_uri: str, state: str) -> str:
        """The login screen URL for ``bank_code`` (client id from the credentials secret)."""
        settings: BankSettings = load_settings(BankSettings)
        credentials = get_bank_credentials(
            settings.bank_credentials_secret_name, max_age=settings.credentials_max_age_seconds
        )
        bank = get_registry().get(bank_code)
        return build_authorization_url(
            authorize_base_url(bank, settings), client_id=credentials.client_id, redirect_uri=redirect_uri, state=state
        )

    def exchange_code(self, bank_code: str, *, code: str, redirect_uri: str) -> TokenResponse:
        """``grant_type=authorization_code`` at the bank's token endpoint."""
        return get_bank_client(bank_code).exchange_code(code, redirect_uri)

    def refresh(self, bank_code: str, *, refresh_token: str) -> TokenResponse:
        """``grant_type=refresh_token`` at the bank's token endpoint."""
        return get_bank_client(bank_code).refresh(refresh_token)

    def revoke(self, bank_code: str, *, token: str, token_type_hint: str | None = None) -> None:
        """RFC 7009 revocation (BPCE: revoking either token revokes both)."""
        get_bank_client(bank_code).revoke(token, token_type_hint=token_type_hint)
