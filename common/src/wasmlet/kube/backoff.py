"""Capped exponential backoff with full jitter, for retrying the API (never for crash loops)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """`next()` returns the next delay: random in [0, min(cap, base * 2**attempt)]; `reset()` on success.

    Full jitter (rather than a fixed schedule) keeps a fleet of agents that lost the API at the
    same moment from reconnecting in lockstep and flooding it when it returns.
    """

    base: float = 0.2
    cap: float = 30.0
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def next(self) -> float:
        ceiling = min(self.cap, self.base * (2 ** self.attempt))
        self.attempt = min(self.attempt + 1, 32)
        return self.rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0
