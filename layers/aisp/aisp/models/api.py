"""Request and response models of the fintech-facing HTTP API (``/v1``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from aisp.banks import Bank, BankCapabilities, Network


class BankSummary(BaseModel):
    """One establishment as listed by ``GET /v1/banks``."""

    model_config = ConfigDict(frozen=True)

    bank_code: str = Field(description="Establishment code (cdetab); the key of a connection")
    name: str
    short_name: str
    network: Network
    capabilities: BankCapabilities

    @classmethod
    def from_bank(cls, bank: Bank) -> BankSummary:
        return cls(
            bank_code=bank.bank_code,
            name=bank.name,
            short_name=bank.short_name,
            network=bank.network,
            capabilities=bank.capabilities,
        )


class Problem(BaseModel):
    """An RFC 9457 problem document with a stable machine-readable ``code``."""

    type: str = Field(description="URI reference identifying the problem type")
    title: str
    status: int
    code: str = Field(description="Stable error code clients can switch on")
    detail: str | None = None
    request_id: str | None = None
    errors: list[dict[str, str]] | None = Field(default=None, description="Field-level validation errors")
