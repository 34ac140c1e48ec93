"""The unattended-access quota: what a bank counts (per user, account, method and Paris calendar day) and what the
API shows of it. PSD2 RTS art. 36(5) allows 4 reads a day without the user; BPCE counts them per TPP, establishment,
PSU, account, AIS method and Europe/Paris calendar day, pages excluded. Design: ``docs/accounts.md`` (Unattended
access and the quota).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import cache
from typing import TYPE_CHECKING, Final, NamedTuple

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

__all__ = [
    "QUOTA_TIME_ZONE",
    "QuotaKey",
    "QuotaMethod",
    "QuotaResponse",
    "QuotaUsage",
    "QuotaUsageItem",
    "paris_day",
    "quota_day_seconds",
    "quota_resets_at",
]

QUOTA_TIME_ZONE: Final = "Europe/Paris"


@cache
def _paris() -> ZoneInfo:
    from zoneinfo import ZoneInfo  # noqa: PLC0415 - only unattended calls need the time zone database

    return ZoneInfo(QUOTA_TIME_ZONE)


class QuotaMethod(StrEnum):
    """An AIS method as the bank counts it (a transactions listing counts once, whatever its dates or pages)."""

    ACCOUNTS = "accounts"
    BALANCES = "balances"
    TRANSACTIONS = "transactions"
    TRUSTED_BENEFICIARIES = "trusted_beneficiaries"
    IDENTITY = "identity"


class QuotaKey(NamedTuple):
    """One counter: a user's reads of one method on one account (``None``: a method of no account) at one bank, on
    one Paris calendar day."""

    bank_code: str
    user_id: str
    account_id: str | None
    method: QuotaMethod
    day: date


class QuotaUsage(NamedTuple):
    """A counter's state: units used of ``limit``; ``exhausted`` when the bank itself said the day's quota is spent."""

    used: int
    limit: int
    exhausted: bool = False

    @property
    def remaining(self) -> int:
        """Units left today (0 once the bank said it is exhausted)."""
        return 0 if self.exhausted else max(0, self.limit - self.used)


def paris_day(moment: datetime) -> date:
    """The Europe/Paris calendar day of ``moment`` (an aware datetime)."""
    return moment.astimezone(_paris()).date()


def quota_resets_at(day: date) -> datetime:
    """The instant (UTC) the counters of ``day`` end: the next Paris midnight, 23 or 25 hours away on DST days."""
    following = datetime.combine(day + timedelta(days=1), time.min, tzinfo=_paris())
    return following.astimezone(UTC)


def quota_day_seconds(day: date) -> int:
    """How long the Paris calendar ``day`` lasts: 86400 s, 82800 on the spring DST day, 90000 on the autumn one."""
    return int((quota_resets_at(day) - quota_resets_at(day - timedelta(days=1))).total_seconds())


class QuotaUsageItem(BaseModel):
    """One counter of today: a method on one account (or on none: accounts, beneficiaries, identity)."""

    model_config = ConfigDict(frozen=True, json_schema_serialization_defaults_required=True, defer_build=True)

    method: QuotaMethod = Field(description="The AIS method, as the bank counts it")
    account_id: str | None = Field(description="The account (the bank's account_id); null for a method of no account")
    used: int = Field(ge=0, description="Unattended reads spent today")
    remaining: int = Field(ge=0, description="Unattended reads left today (0 when the bank said the quota is spent)")


class QuotaResponse(BaseModel):
    """Today's unattended quota at one bank: the counters used so far; any other account and method has ``limit``."""

    model_config = ConfigDict(frozen=True, json_schema_serialization_defaults_required=True, defer_build=True)

    bank_code: str
    limit: int = Field(ge=0, description="Unattended reads a day per account and method at this bank")
    day: date = Field(description="Today, as a Europe/Paris calendar day (the day the bank counts on)")
    time_zone: str = Field(default=QUOTA_TIME_ZONE, description="The time zone of day and of the reset")
    resets_at: AwareDatetime = Field(description="When today's counters end: the next Europe/Paris midnight (UTC)")
    usage: list[QuotaUsageItem] = Field(description="The counters used today; the others have all of limit left")
