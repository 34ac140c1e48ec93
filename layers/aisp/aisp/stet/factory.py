"""Ready :class:`~aisp.stet.BankClient` objects, one per establishment (:class:`BankClients`, built by ``aisp.wiring``).

Wires the registry (host, API prefix, response-signature policy), the settings (environment, timeouts, local CA)
and the TPP credentials (QWAC files for mTLS, QSealC key for signatures, pinned bank certificates). Clients are
kept per bank and per credentials version, so a secret rotation picked up after ``max_age`` builds fresh clients,
while warm calls reuse the keep-alive session.
"""

from __future__ import annotations

import threading
from typing import Final

import requests
from requests.adapters import HTTPAdapter

from aisp.aws.secrets import BankCredentials, ca_bundle_file, get_bank_credentials, qwac_cert_files
from aisp.banks import Bank, BankRegistry, bank_base_url
from aisp.settings import BankSettings
from aisp.signing import BankSignatureAuth, PinnedCertificates
from aisp.stet.client import BankClient, ResponseVerification

# Keep-alive connections kept per bank host: one per concurrent caller (the token refresher's worker threads share
# one client; requests' default of 10 would open and drop a TLS connection for every call beyond the tenth).
POOL_MAXSIZE: Final = 64


def build_bank_client(bank: Bank, settings: BankSettings, credentials: BankCredentials) -> BankClient:
    """Create a client for ``bank`` (no caching; see :class:`BankClients`)."""
    auth = BankSignatureAuth(
        key_id=credentials.qseal_key_id, private_key_pem=credentials.qseal_key_pem.get_secret_value()
    )
    policy = bank.response_signature
    pinned = PinnedCertificates.of(
        (*policy.certificates, *credentials.bank_signing_certificates.get(bank.bank_code, ()))
    )
    session = requests.Session()
    session.trust_env = False  # no netrc credentials, proxy or CA overrides from the environment
    session.mount("https://", HTTPAdapter(pool_connections=1, pool_maxsize=POOL_MAXSIZE))
    # Connect timeout just above the 3 s TCP retransmission interval; read timeout from settings.
    return BankClient(
        bank_code=bank.bank_code,
        base_url=bank_base_url(bank, settings),
        api_prefix=bank.api_prefix,
        stet_version=bank.stet_version,
        date_format=bank.date_format,
        oauth_path=bank.oauth_path,
        response_verification=ResponseVerification(mode=policy.mode.value, pinned=pinned),
        client_id=credentials.client_id,
        auth=auth,
        cert=qwac_cert_files(credentials),
        verify=ca_bundle_file(settings.bank_ca_bundle) if settings.bank_ca_bundle else True,
        timeout=(3.05, settings.bank_timeout_seconds),
        session=session,
    )


class BankClients:
    """The container's clients, one per bank and credentials version.

    Parameters
    ----------
    registry
        Where each bank code is reached and how it signs.
    settings
        Environment, timeouts, the credentials secret's name and how long its value is trusted.
    """

    def __init__(self, registry: BankRegistry, settings: BankSettings) -> None:
        self.registry = registry
        self.settings = settings
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str], BankClient] = {}

    def credentials(self) -> BankCredentials:
        """The TPP credentials (cached by Powertools for ``credentials_max_age_seconds``)."""
        settings = self.settings
        return get_bank_credentials(settings.bank_credentials_secret_name, max_age=settings.credentials_max_age_seconds)

    def get(self, bank_code: str) -> BankClient:
        """The client for ``bank_code``.

        Raises
        ------
        NotFoundError
            For a bank code that is not in the registry.
        ConfigurationError
            For an unreadable or incomplete credentials secret.
        """
        bank = self.registry.get(bank_code)
        # Under the lock: the token refresher's worker threads all ask at once on a cold container, and each would
        # otherwise build its own Secrets Manager client and fetch the secret (warm, this is a cache look-up).
        with self._lock:
            credentials = self.credentials()
            key = (bank.bank_code, credentials.version)
            client = self._clients.get(key)
            if client is None:
                # Drop clients built with older credentials for this bank.
                for stale in [k for k in self._clients if k[0] == bank.bank_code]:
                    del self._clients[stale]
                client = self._clients[key] = build_bank_client(bank, self.settings, credentials)
            return client
