"""Per-link rate limits (sans-IO): token buckets for messages and bytes.

A link that reads faster than its limits is not cut: its reader waits until the
buckets refill, so the peer is slowed down by TCP flow control (its writes block)
and every other link keeps being served.
"""

from __future__ import annotations

__all__ = ["RateLimit"]


class RateLimit:
    """Messages and bytes per second, with a burst of one second's worth.

    Example::

        limit = RateLimit(messages_per_s=1000, bytes_per_s=1 << 20, now=0.0)
        wait = limit.take(messages=10, size=4096, now=0.5)   # 0.0: within the limits
    """

    def __init__(self, messages_per_s: float, bytes_per_s: float, now: float) -> None:
        self.messages_per_s = messages_per_s
        self.bytes_per_s = bytes_per_s
        self._messages = messages_per_s  # tokens left (a full second's burst)
        self._bytes = bytes_per_s
        self._at = now
        self.waited = 0.0  # seconds this link was held back, in total

    def take(self, *, messages: int, size: int, now: float) -> float:
        """Spend tokens for what was just read; return the seconds to wait before
        reading more (0.0 when within the limits)."""
        elapsed = max(0.0, now - self._at)
        self._at = now
        self._messages = min(self.messages_per_s, self._messages + elapsed * self.messages_per_s)
        self._bytes = min(self.bytes_per_s, self._bytes + elapsed * self.bytes_per_s)
        self._messages -= messages
        self._bytes -= size
        wait = max(-self._messages / self.messages_per_s, -self._bytes / self.bytes_per_s, 0.0)
        self.waited += wait
        return wait
