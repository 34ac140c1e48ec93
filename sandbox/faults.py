"""Injected latency and failures, set through the admin API (tests only; off by default).

A fault rule applies to one scope (``token`` = the OAuth token/revoke endpoints, ``aisp`` = the account information
endpoints, ``any``) and optionally one bank code. Which calls fail is deterministic: ``every=N`` fails the 1st,
(N+1)th, (2N+1)th... matching call; ``ratio`` fails a share of calls drawn from a generator seeded with ``seed``;
``times`` retires the rule after that many failures. ``page`` narrows an AISP rule to one page of a paged list (the
``page`` query parameter; a request without one is page ``1``), so a fault can hit the middle of a pagination;
``path`` to the requests whose path contains it (``"038-CPT30019654052/transactions"``: one account's listing), so
a fault can hit the middle of a run over several accounts.
``slow`` is the one kind that still answers: it holds the call for ``hang_seconds``, then serves it normally.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MAX_LATENCY_MS = 60_000
MAX_HANG_SECONDS = 600.0


class Scope(StrEnum):
    """Which endpoints a rule touches."""

    ANY = "any"
    TOKEN = "token"  # noqa: S105 - a scope name, not a secret
    AISP = "aisp"


class FaultKind(StrEnum):
    """What a failing call gets."""

    ERROR_500 = "500"
    ERROR_503 = "503"
    TIMEOUT = "timeout"
    TOO_MANY_REQUESTS = "429"
    TMRQ = "tmrq"
    SLOW = "slow"  # hold for hang_seconds, then answer normally


class FaultRule(BaseModel):
    """One failure rule (admin ``POST /_admin/faults`` body)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fault: FaultKind
    scope: Scope = Scope.ANY
    bank: str | None = None
    every: int = Field(default=1, ge=1)
    ratio: float | None = Field(default=None, ge=0.0, le=1.0)
    seed: int = 0
    times: int | None = Field(default=None, ge=1)
    retry_after: int = Field(default=60, ge=0)
    hang_seconds: float = Field(default=30.0, gt=0.0, le=MAX_HANG_SECONDS)
    page: str | None = Field(default=None, min_length=1, max_length=16)
    path: str | None = Field(default=None, min_length=1, max_length=200)


class LatencyRule(BaseModel):
    """Added latency (admin ``POST /_admin/latency`` body); the most specific rule wins."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ms: int = Field(ge=0, le=MAX_LATENCY_MS)
    scope: Scope = Scope.ANY
    bank: str | None = None


def _page_of(page: str | None) -> str:
    """The page a request asks for: no ``page`` parameter, or ``first``, is page 1."""
    return "1" if page in (None, "", "first") else str(page)


def _matches(rule: FaultRule, scope: Scope, bank: str, page: str | None, path: str) -> bool:
    if rule.scope not in (Scope.ANY, scope) or rule.bank not in (None, bank):
        return False
    if rule.path is not None and rule.path not in path:
        return False
    return rule.page is None or (scope is Scope.AISP and _page_of(rule.page) == _page_of(page))


@dataclass(slots=True)
class _Active:
    rule: FaultRule
    rng: random.Random
    calls: int = 0
    fired: int = 0

    def fires(self) -> bool:
        index = self.calls
        self.calls += 1
        ratio = self.rule.ratio
        hit = self.rng.random() < ratio if ratio is not None else index % self.rule.every == 0
        if hit:
            self.fired += 1
        return hit

    @property
    def spent(self) -> bool:
        return self.rule.times is not None and self.fired >= self.rule.times


@dataclass(slots=True)
class FaultBoard:
    """The current fault rules and latencies of one sandbox.

    Parameters
    ----------
    base_latency_ms
        Latency applied to every token and AISP call when no admin rule is more specific (``--latency-ms``).
    """

    base_latency_ms: int = 0
    _faults: list[_Active] = field(default_factory=list)
    _latency: dict[tuple[Scope, str | None], int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, rule: FaultRule) -> None:
        """Append a rule; rules are tried in the order they were added."""
        with self._lock:
            self._faults.append(_Active(rule, random.Random(rule.seed)))  # noqa: S311 - reproducible test faults

    def clear(self) -> None:
        """Remove every fault rule."""
        with self._lock:
            self._faults.clear()

    def set_latency(self, rule: LatencyRule) -> None:
        """Set (or, with ``ms=0``, neutralise) the latency of a scope and bank."""
        with self._lock:
            self._latency[(rule.scope, rule.bank)] = rule.ms

    def reset(self) -> None:
        """Back to the start-up configuration."""
        with self._lock:
            self._faults.clear()
            self._latency.clear()

    def latency_seconds(self, scope: Scope, bank: str) -> float:
        """Delay to apply to a call, in seconds."""
        if not self._latency:
            return self.base_latency_ms / 1000
        for key in ((scope, bank), (scope, None), (Scope.ANY, bank), (Scope.ANY, None)):
            if key in self._latency:
                return self._latency[key] / 1000
        return self.base_latency_ms / 1000

    def pick(self, scope: Scope, bank: str, *, page: str | None = None, path: str = "") -> FaultRule | None:
        """The rule that makes this call fail (or, ``slow``, wait), if any; counts the call against every matching rule.

        ``page`` is the AISP call's ``page`` query parameter (``None`` when it has none), ``path`` its path.
        """
        if not self._faults:
            return None
        with self._lock:
            chosen: FaultRule | None = None
            for active in self._faults:
                if _matches(active.rule, scope, bank, page, path) and active.fires() and chosen is None:
                    chosen = active.rule
            self._faults = [active for active in self._faults if not active.spent]
            return chosen

    def snapshot(self) -> dict[str, Any]:
        """Current rules, for ``GET /_admin/state``."""
        with self._lock:
            return {
                "base_latency_ms": self.base_latency_ms,
                "latency": [
                    {"scope": scope.value, "bank": bank, "ms": ms} for (scope, bank), ms in self._latency.items()
                ],
                "faults": [
                    {**active.rule.model_dump(mode="json"), "calls": active.calls, "fired": active.fired}
                    for active in self._faults
                ],
            }
