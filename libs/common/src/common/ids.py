"""Time-ordered UUIDs (RFC 9562 version 7) for primary keys.

Random version-4 ids scatter inserts across the clustered index; version 7 ids grow with time,
so new rows land at the end of the primary key while staying unguessable.
"""

import os
import time
import uuid


def uuid7() -> uuid.UUID:
    """A new version-7 UUID: 48 bits of Unix milliseconds, then 74 random bits."""
    unix_ms = time.time_ns() // 1_000_000
    random_bits = int.from_bytes(os.urandom(10), "big")
    value = (unix_ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= (random_bits >> 68) << 64 & (0xFFF << 64)  # 12 random bits
    value |= 0b10 << 62  # variant
    value |= random_bits & ((1 << 62) - 1)
    return uuid.UUID(int=value)
