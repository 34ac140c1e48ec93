"""What we honestly know about the connected PSU's request, for the bank's ``PSU-*`` headers.

Built by the HTTP functions from the API Gateway request (``aisp.api.psu``), passed through the use cases untouched
and turned into :class:`aisp.stet.PsuContext` by the bank gateway. Nothing is invented: a field is set only when the
user's request carried it (the source IP always does). Batch calls (the refresher) have no ``PsuInfo`` at all, so
they send no ``PSU-*`` header and count against the bank's 4-a-day quota, as the RTS intends.
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["PsuInfo"]


class PsuInfo(NamedTuple):
    """The PSU's request as the gateway received it (``PSU-IP-Address`` and the ``PSU-*`` headers we can fill)."""

    ip_address: str
    http_method: str | None = None
    date: str | None = None
    user_agent: str | None = None
    referer: str | None = None
    accept: str | None = None
    accept_charset: str | None = None
    accept_encoding: str | None = None
    accept_language: str | None = None

    def as_kwargs(self) -> dict[str, Any]:
        """The fields, by name (the keyword arguments of :class:`aisp.stet.PsuContext`)."""
        return self._asdict()
