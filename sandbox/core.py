"""The running sandbox's shared objects: settings, TPP registration, clock, faults and one store per bank."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from sandbox.banks import BANKS
from sandbox.clock import Clock
from sandbox.faults import FaultBoard
from sandbox.personas import PERSONAS
from sandbox.signature import ResponseSeal
from sandbox.store import BankStore, Settings, TppRegistration


@dataclass(slots=True, kw_only=True)
class SandboxCore:
    """Everything the applications share.

    Parameters
    ----------
    settings
        Lifetimes and limits.
    tpp
        The registered TPP.
    admin_enabled
        Whether ``/_admin/...`` answers (loopback callers only).
    base_latency_ms
        Latency applied to every token and AISP call.
    response_seal
        Signs every AISP answer as BPCE does; ``None`` leaves them unsigned.
    """

    settings: Settings
    tpp: TppRegistration
    admin_enabled: bool = False
    base_latency_ms: int = 0
    response_seal: ResponseSeal | None = None
    clock: Clock = field(default_factory=Clock)
    stores: dict[str, BankStore] = field(default_factory=dict)
    faults: FaultBoard = field(init=False)
    stop_event: threading.Event = field(default_factory=threading.Event)
    screens_origin: str = ""

    def __post_init__(self) -> None:
        self.faults = FaultBoard(base_latency_ms=self.base_latency_ms)
        if not self.stores:
            self.stores = {bank.code: BankStore(bank, PERSONAS.get(bank.code, ())) for bank in BANKS}

    def reset(self) -> None:
        """Back to the start-up state: no token, initial consents, no quota used, no fault, real time."""
        for store in self.stores.values():
            store.reset()
        self.faults.reset()
        self.clock.reset()

    def pause(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking early when the sandbox stops; ``True`` if it is stopping."""
        if seconds <= 0:
            return self.stop_event.is_set()
        return self.stop_event.wait(seconds)
