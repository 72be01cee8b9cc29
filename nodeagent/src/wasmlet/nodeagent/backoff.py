"""The kubelet's crash-loop and image-pull backoff: 10 s doubling to 300 s, reset after 10 min clean."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RestartBackoff:
    """Per-container delay before the next start. Deterministic (no jitter), as the kubelet's is."""

    base: float = 10.0
    cap: float = 300.0
    reset_after: float = 600.0
    delay: float = 0.0

    def next_delay(self, ran_for: float) -> float:
        """The wait before restarting a container that just ran for `ran_for` seconds."""
        if ran_for >= self.reset_after or self.delay == 0.0:
            self.delay = self.base
        else:
            self.delay = min(self.cap, self.delay * 2)
        return self.delay
