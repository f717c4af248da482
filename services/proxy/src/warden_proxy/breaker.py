"""A circuit breaker per connector: stop hammering a dead upstream, and say so."""

from __future__ import annotations

import time
from dataclasses import dataclass

from warden_common.contracts import ErrorCode
from warden_common.errors import WardenError
from warden_common.metrics import BREAKER_STATE, connector_label

__all__ = ["Breakers", "CircuitOpen"]


class CircuitOpen(WardenError):
    code = ErrorCode.circuit_open
    http_status = 503
    retryable = True


@dataclass
class _State:
    failures: int = 0
    open_until: float = 0.0


class Breakers:
    def __init__(self, threshold: int = 5, cooldown_s: float = 30.0) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self._s: dict[str, _State] = {}

    def check(self, connector: str) -> None:
        s = self._s.get(connector)
        if s is None or s.failures < self.threshold:
            return
        now = time.monotonic()
        if now < s.open_until:
            raise CircuitOpen(
                f"upstream {connector} failed {s.failures} times in a row; Warden stops calling it for "
                f"{s.open_until - now:.0f}s more. Check the server, then try again."
            )
        # half-open: let this one call through; success closes, failure re-opens
        s.open_until = now + self.cooldown_s

    def success(self, connector: str) -> None:
        if self._s.pop(connector, None) is not None:
            BREAKER_STATE.labels(connector_label(connector)).set(0)

    def failure(self, connector: str) -> None:
        s = self._s.setdefault(connector, _State())
        s.failures += 1
        if s.failures >= self.threshold:
            s.open_until = time.monotonic() + self.cooldown_s
            BREAKER_STATE.labels(connector_label(connector)).set(1)

    def reset(self, connector: str) -> None:
        if self._s.pop(connector, None) is not None:
            BREAKER_STATE.labels(connector_label(connector)).set(0)

    def state(self) -> dict[str, str]:
        now = time.monotonic()
        return {
            c: ("open" if s.failures >= self.threshold and now < s.open_until else "closed") for c, s in self._s.items()
        }
