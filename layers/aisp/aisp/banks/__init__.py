"""The BPCE institution registry: which establishments exist, how to reach them, what each supports."""

from aisp.banks.registry import (
    Bank,
    BankCapabilities,
    BankRegistry,
    Network,
    ResponseSignaturePolicy,
    SignatureMode,
    authorize_base_url,
    bank_base_url,
    load_registry,
)

__all__ = [
    "Bank",
    "BankCapabilities",
    "BankRegistry",
    "Network",
    "ResponseSignaturePolicy",
    "SignatureMode",
    "authorize_base_url",
    "bank_base_url",
    "load_registry",
]
