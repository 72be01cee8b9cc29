"""The kubelet's crash-loop and image-pull backoff (client-go's flowcontrol.Backoff as the kubelet uses it).

Crash loop (kuberuntime's `doBackOff`): the first restart of a container is immediate; each
later one waits 10 s, then 20 s, 40 s … up to 300 s; a container that ran longer than twice the
cap since its last restart starts over (the entry has expired). Image pulls (the image
manager): every failed pull waits, 10 s doubling to 300 s.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RestartBackoff:
    """One container's (or one Pod's pulls') delay. Deterministic (no jitter), as the kubelet's is."""

    base: float = 10.0
    cap: float = 300.0
    first_immediate: bool = True  # a crash loop restarts at once the first time; a pull always waits
    delay: float = 0.0  # the back-off the next wait will use; 0 while there is no entry

    @property
    def reset_after(self) -> float:
        """flowcontrol's hasExpired: an entry older than twice the cap is forgotten."""
        return 2 * self.cap

    def next_delay(self, ran_for: float) -> float:
        """The wait before the next try, after a run (or a pull) that lasted `ran_for` seconds."""
        if self.delay == 0.0 or ran_for > self.reset_after:
            self.delay = self.base
            return 0.0 if self.first_immediate else self.delay
        if self.first_immediate:  # wait the current back-off; it doubles when the wait is over
            wait, self.delay = self.delay, min(self.cap, self.delay * 2)
            return wait
        self.delay = min(self.cap, self.delay * 2)
        return self.delay
