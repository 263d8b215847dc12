"""Sticky A/B arms: a user's arm is a pure function of a hash of the user id.

``choose_arm({"cost_optimized": 25, "balanced": 50, ...}, "alice")`` always returns the same arm for
alice; over many users the shares follow the weights. Without a user id the request id is hashed, so
anonymous traffic is still split by the weights (but not sticky).
"""

from __future__ import annotations

import hashlib


def bucket(key: str, salt: str = "modelplex") -> float:
    """A uniform number in [0, 1) from a stable hash (blake2b) of ``salt:key``."""
    digest = hashlib.blake2b(f"{salt}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def choose_arm(split: dict[str, float], key: str, salt: str = "modelplex") -> str | None:
    total = sum(w for w in split.values() if w > 0)
    if total <= 0:
        return None
    point = bucket(key, salt) * total
    acc = 0.0
    last = None
    for arm in sorted(split):  # sorted: independent of dict order in the config file
        w = split[arm]
        if w <= 0:
            continue
        acc += w
        last = arm
        if point < acc:
            return arm
    return last
