"""Who is calling: inference keys, the admin key, and what a key may use.

Owns: ``Principal`` (the caller of an inference route: a key, or nobody under ``--no-auth``),
``Authenticator`` (inference and admin checks) and ``check_target`` (the key's allow-list).

Timing: a presented key is always hashed and compared once with ``hmac.compare_digest``, whether
its id is known or not (an unknown or malformed key is compared against a dummy digest), so a 401
takes the same work either way. The admin key is compared as HMACs too (equal lengths, constant
time). The admin key is not an inference key and inference keys never open the admin API.

Verified keys: the digest of a key that verified is remembered (a bounded map of at most
``VERIFIED_CACHE_SIZE`` keys: the HMAC of a string under this process's server secret never
changes), so a known key costs a dictionary look-up and the compare instead of an HMAC. Whether it
is still active is read from its record on every request (``KeyManager``'s cache: at once after a
revocation through this replica, within the cache TTL after one through another). Keys that fail
never enter the map, so every 401 still costs the full hash.

Must not touch: key storage (``server.keys``), rate limits and budgets (``server.gateway``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from modelplex.server.errors import forbidden, unauthorized
from modelplex.server.http import RequestHead
from modelplex.server.keys import ApiKey, KeyManager, generate_key, parse_key


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of an inference route. ``key`` is ``None`` only when auth is off."""

    key: ApiKey | None = None

    @property
    def key_id(self) -> str | None:
        return self.key.id if self.key is not None else None


ANONYMOUS = Principal(None)
VERIFIED_CACHE_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class Target:
    """What a request names: ``kind`` is ``model`` (``name`` = canonical id), ``task`` or ``auto``."""

    kind: str
    name: str
    requested: str


class Authenticator:
    """Checks inference keys and the admin key. ``compare`` is ``hmac.compare_digest`` (injectable
    so tests can see it is called on every path)."""

    def __init__(self, keys: KeyManager | None, admin_key: str | None, *, no_auth: bool = False,
                 compare: Callable[[str | bytes, str | bytes], bool] = hmac.compare_digest) -> None:
        self.keys = keys
        self.no_auth = no_auth
        self.compare = compare
        self._admin_pepper = secrets.token_bytes(32)
        self._admin = self._admin_mac(admin_key) if admin_key else None
        self._dummy = keys.digest(generate_key()[1]) if keys is not None else ""
        self._verified: dict[str, tuple[str, str, Principal | None]] = {}
        """presented key -> (key id, its digest, the principal last built for it)."""

    def _admin_mac(self, value: str) -> bytes:
        return hmac.new(self._admin_pepper, value.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()

    @property
    def admin_configured(self) -> bool:
        return self._admin is not None

    async def inference(self, head: RequestHead) -> Principal:
        """The principal for an inference request, or a 401."""
        if self.no_auth:
            return ANONYMOUS
        presented = head.credential()
        keys = self.keys
        if presented is None or keys is None:
            raise unauthorized()
        hit = self._verified.get(presented)
        if hit is not None:
            key_id, digest, principal = hit
            record = keys.cached(key_id) or await keys.lookup(key_id)
            if record is not None and self.compare(digest, record.digest):
                if not record.active:
                    raise unauthorized("This API key has been revoked.")
                if principal is None or principal.key is not record:
                    principal = Principal(record)
                    self._verified[presented] = (key_id, digest, principal)
                return principal
            self._verified.pop(presented, None)  # the record is gone or changed: verify from scratch
        key_id = parse_key(presented)
        record = await keys.lookup(key_id) if key_id is not None else None
        expected = record.digest if record is not None else self._dummy
        digest = keys.digest(presented)
        ok = self.compare(digest, expected)
        if ok and record is not None:
            if not record.active:
                raise unauthorized("This API key has been revoked.")
            principal = Principal(record)
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                del self._verified[next(iter(self._verified))]
            self._verified[presented] = (record.id, digest, principal)
            return principal
        if self._admin is not None and hmac.compare_digest(self._admin_mac(presented), self._admin):
            raise unauthorized("The admin key cannot call inference routes; create an inference key with "
                               "POST /api/v1/keys.")
        raise unauthorized()

    def admin(self, head: RequestHead) -> None:
        """Pass, or raise a 401. With no admin key configured the admin API is open only under ``--no-auth``."""
        if self._admin is None:
            if self.no_auth:
                return
            raise unauthorized("The admin API needs the admin key (server.admin_key or MODELPLEX_ADMIN_KEY).")
        presented = head.credential()
        mac = self._admin_mac(presented) if presented is not None else secrets.token_bytes(32)
        if not self.compare(mac, self._admin):
            raise unauthorized("Invalid or missing admin key.")


def check_target(principal: Principal, target: Target) -> None:
    """403 when the key's allow-list does not cover the target."""
    key = principal.key
    if key is None:
        return
    if target.kind == "model":
        if not key.allows_model(target.name, target.requested):
            raise forbidden(f"This API key may not use model {target.name!r}.", param="model")
    elif not key.allows_task(target.name):
        label = "auto routing" if target.kind == "auto" else f"task {target.name!r}"
        raise forbidden(f"This API key may not use {label}.", param="model")


__all__ = ["ANONYMOUS", "VERIFIED_CACHE_SIZE", "Authenticator", "Principal", "Target", "check_target"]
