"""Authentication and allow-lists: every 401 path does the same HMAC compare (a dummy digest for an
unknown or malformed key), the admin key and inference keys do not open each other's doors, and
``check_target`` applies the key's globs."""

from __future__ import annotations

import hmac

import pytest

from modelplex.server.auth import ANONYMOUS, Authenticator, Principal, Target, check_target
from modelplex.server.errors import GatewayError
from modelplex.server.http import RequestHead
from modelplex.server.keys import ApiKey, KeyManager, MemoryKeyStore

SECRET = b"auth-test-server-secret-0123456789"
ADMIN = "the-admin-key-0123456789"


def head(value: str | None, *, header: bytes = b"authorization") -> RequestHead:
    headers = [] if value is None else [(header, value.encode())]
    return RequestHead({"type": "http", "headers": headers})


class Spy:
    """Wraps ``hmac.compare_digest`` and remembers each call's expected digest."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, object]] = []

    def __call__(self, a: str | bytes, b: str | bytes) -> bool:
        self.calls.append((a, b))
        return hmac.compare_digest(a, b)


@pytest.fixture
async def setup() -> tuple[Authenticator, KeyManager, Spy, ApiKey, str]:
    keys = KeyManager(MemoryKeyStore(), SECRET)
    record, plaintext = await keys.create("k")
    spy = Spy()
    return Authenticator(keys, ADMIN, compare=spy), keys, spy, record, plaintext


async def test_valid_key_authenticates_with_one_compare(setup) -> None:
    auth, _, spy, record, plaintext = setup
    principal = await auth.inference(head(f"Bearer {plaintext}"))
    assert principal.key_id == record.id
    assert len(spy.calls) == 1 and spy.calls[0][1] == record.digest
    principal = await auth.inference(head(plaintext, header=b"x-api-key"))  # Anthropic SDK style
    assert principal.key_id == record.id


@pytest.mark.parametrize("kind", ["wrong_secret", "unknown_id", "malformed", "admin_key"])
async def test_every_401_path_compares_once(setup, kind: str) -> None:
    auth, keys, spy, record, plaintext = setup
    presented = {"wrong_secret": plaintext[:-4] + "AAAA", "unknown_id": "mpx-zzzzzzzz-" + plaintext[13:],
                 "malformed": "sk-something-else", "admin_key": ADMIN}[kind]
    with pytest.raises(GatewayError) as exc:
        await auth.inference(head(f"Bearer {presented}"))
    assert exc.value.status == 401
    assert len(spy.calls) == 1
    presented_digest, expected = spy.calls[0]
    assert presented_digest == keys.digest(presented)
    if kind == "wrong_secret":
        assert expected == record.digest
    else:
        assert expected == auth._dummy and expected != record.digest  # the dummy stands in for a record
    if kind == "admin_key":
        assert "admin key cannot call inference routes" in exc.value.message


async def test_missing_and_revoked_keys(setup) -> None:
    auth, keys, _, record, plaintext = setup
    for h in (head(None), head("Basic abc"), head("Bearer ")):
        with pytest.raises(GatewayError) as exc:
            await auth.inference(h)
        assert exc.value.status == 401
    await keys.revoke(record.id)
    with pytest.raises(GatewayError) as exc:
        await auth.inference(head(f"Bearer {plaintext}"))
    assert exc.value.status == 401 and "revoked" in exc.value.message


async def test_admin_key_checks(setup) -> None:
    auth, _, spy, _, plaintext = setup
    auth.admin(head(f"Bearer {ADMIN}"))
    for bad in (plaintext, ADMIN + "x", None):
        with pytest.raises(GatewayError) as exc:
            auth.admin(head(None if bad is None else f"Bearer {bad}"))
        assert exc.value.status == 401
    assert len(spy.calls) == 4  # every admin check compares, missing key included


async def test_no_auth_and_no_admin_key() -> None:
    open_auth = Authenticator(KeyManager(MemoryKeyStore(), SECRET), None, no_auth=True)
    assert await open_auth.inference(head(None)) is ANONYMOUS
    open_auth.admin(head(None))  # no admin key under --no-auth: the admin API is open
    locked = Authenticator(KeyManager(MemoryKeyStore(), SECRET), None, no_auth=False)
    with pytest.raises(GatewayError):
        locked.admin(head("Bearer anything"))
    with_admin = Authenticator(KeyManager(MemoryKeyStore(), SECRET), ADMIN, no_auth=True)
    with pytest.raises(GatewayError):  # a configured admin key is required even under --no-auth
        with_admin.admin(head(None))


def test_check_target_applies_globs() -> None:
    key = ApiKey(id="abcdefgh", name="k", digest="", allowed_models=("fakeai/*",), allowed_tasks=("fast", "auto"))
    p = Principal(key)
    check_target(p, Target("model", "fakeai/small", "small"))
    check_target(p, Target("task", "fast", "task:fast"))
    check_target(p, Target("auto", "auto", "auto"))
    for target in (Target("model", "fakeclaude/sonnet", "fakeclaude/sonnet"), Target("task", "reasoning", "reasoning")):
        with pytest.raises(GatewayError) as exc:
            check_target(p, target)
        assert exc.value.status == 403 and exc.value.code == "model_not_allowed"
    no_auto = Principal(ApiKey(id="abcdefgh", name="k", digest="", allowed_tasks=("fast",)))
    with pytest.raises(GatewayError):
        check_target(no_auto, Target("auto", "auto", "auto"))
    check_target(ANONYMOUS, Target("model", "anything/at-all", "x"))


# ------------------------------------------------------------------------------------------ verified keys


class CountingKeys(KeyManager):
    """A key manager that counts HMAC computations."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.digests = 0

    def digest(self, plaintext: str) -> str:
        self.digests += 1
        return super().digest(plaintext)


async def test_a_verified_key_is_not_hashed_again_but_still_compared_and_checked() -> None:
    keys = CountingKeys(MemoryKeyStore(), SECRET)
    record, plaintext = await keys.create("k")
    spy = Spy()
    auth = Authenticator(keys, ADMIN, compare=spy)
    hashed = keys.digests
    first = await auth.inference(head(f"Bearer {plaintext}"))
    second = await auth.inference(head(plaintext, header=b"x-api-key"))
    assert first.key_id == second.key_id == record.id
    assert keys.digests == hashed + 1  # once, for the first request
    assert len(spy.calls) == 2 and all(expected == record.digest for _, expected in spy.calls)
    wrong = plaintext[:-4] + "AAAA"  # same id, wrong secret: hashed and refused every time
    for _ in range(2):
        with pytest.raises(GatewayError) as exc:
            await auth.inference(head(f"Bearer {wrong}"))
        assert exc.value.status == 401
    assert keys.digests == hashed + 3


async def test_a_verified_key_stops_working_at_once_when_revoked_here() -> None:
    keys = KeyManager(MemoryKeyStore(), SECRET)
    record, plaintext = await keys.create("k")
    auth = Authenticator(keys, ADMIN)
    await auth.inference(head(f"Bearer {plaintext}"))
    await keys.revoke(record.id)
    with pytest.raises(GatewayError) as exc:
        await auth.inference(head(f"Bearer {plaintext}"))
    assert exc.value.status == 401 and "revoked" in exc.value.message


async def test_a_verified_key_stops_working_within_the_cache_ttl_when_revoked_elsewhere() -> None:
    now = [100.0]
    store = MemoryKeyStore()
    keys = KeyManager(store, SECRET, monotonic=lambda: now[0], cache_ttl=5.0)
    record, plaintext = await keys.create("k")
    auth = Authenticator(keys, ADMIN)
    await auth.inference(head(f"Bearer {plaintext}"))
    await store.revoke(record.id, at=1.0)  # another replica revoked it in the shared store
    assert (await auth.inference(head(f"Bearer {plaintext}"))).key_id == record.id  # cached record
    now[0] += 5.1
    with pytest.raises(GatewayError) as exc:
        await auth.inference(head(f"Bearer {plaintext}"))
    assert exc.value.status == 401 and "revoked" in exc.value.message


async def test_the_verified_key_map_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import modelplex.server.auth as auth_module

    monkeypatch.setattr(auth_module, "VERIFIED_CACHE_SIZE", 2)
    keys = KeyManager(MemoryKeyStore(), SECRET)
    auth = Authenticator(keys, ADMIN)
    made = [await keys.create(f"k{i}") for i in range(3)]
    for record, plaintext in made:
        assert (await auth.inference(head(f"Bearer {plaintext}"))).key_id == record.id
    assert len(auth._verified) == 2 and made[0][1] not in auth._verified
