"""List the establishments a user can connect to."""

from __future__ import annotations

from aisp.banks import BankRegistry
from aisp.models.api import BankSummary


def list_banks(registry: BankRegistry) -> list[BankSummary]:
    """Return every establishment (brand) of the registry, in registry order."""
    return [BankSummary.from_bank(bank) for bank in registry.banks]
