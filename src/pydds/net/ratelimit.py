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
        # Comparisons rather than min() and max(): this runs for every frame read.
        elapsed = now - self._at
        self._at = now
        left, size_left = self._messages, self._bytes
        if elapsed > 0.0:
            left += elapsed * self.messages_per_s
            if left > self.messages_per_s:
                left = self.messages_per_s
            size_left += elapsed * self.bytes_per_s
            if size_left > self.bytes_per_s:
                size_left = self.bytes_per_s
        left -= messages
        size_left -= size
        self._messages, self._bytes = left, size_left
        if left >= 0 and size_left >= 0:
            return 0.0
        wait = max(-left / self.messages_per_s, -size_left / self.bytes_per_s)
        self.waited += wait
        return wait
