"""Request ids: 32 lowercase hex characters, ordered by creation time.

Owns: ``new_request_id()``, used by the router and the gateway for every request that brings no id.

Layout (the idea of UUIDv7, in the 32-hex form modelplex has always used):

* the first 12 hex characters are the milliseconds since the Unix epoch (48 bits, good until 10889);
* the last 20 are 80 bits from ``os.urandom``, read ``_BATCH`` ids at a time.

Why time-ordered: every usage store keys its records (and their attempts) by ``request_id``. Random
ids land all over those primary-key B-trees, so once the index outgrows the page cache nearly every
insert touches a cold page; ids that grow with time append at the right edge. Measured with the
SQLite sink (docs/performance.md): half the CPU per stored record at 50,000 records.

Unique: 80 random bits within a millisecond. Unguessable: the random part comes from the OS, so
seeing ids does not predict others, and an application's ``random.seed`` has no effect. Not
secret: ids appear in responses and logs. A forked child drops the batch it inherited.
"""

from __future__ import annotations

import os
import time

_BATCH = 256
_RANDOM_HEX = 20
_pool: list[str] = []


def new_request_id() -> str:
    """A fresh request id: 12 hex characters of epoch milliseconds, then 20 random hex characters."""
    try:
        tail = _pool.pop()
    except IndexError:
        raw = os.urandom(_RANDOM_HEX // 2 * _BATCH).hex()
        _pool.extend(raw[i:i + _RANDOM_HEX] for i in range(_RANDOM_HEX, len(raw), _RANDOM_HEX))
        tail = raw[:_RANDOM_HEX]
    return f"{time.time_ns() // 1_000_000:012x}{tail}"


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_pool.clear)  # a forked child must not reuse its parent's ids
