"""Valkey cache store: value and eviction bookkeeping change together in one Lua script.

A route's namespace is `prefix:cache:{label}`: entries `...:e:<digest>` (a hash: the Vary names, the
expiry and, per variant, the value and store time; with the namespace's storage TTL), the eviction
order `...:o` (zset), expiry times `...:x` (zset), a use counter `...:n`, fill locks
`...:l:<digest>` and purge tag sets `...:g:<tag>` (entry digests). They all share the `{label}` hash
tag, so every script touches one cluster slot: a purge of one namespace is atomic on a cluster too.
A purge across routes is one such script per namespace (each atomic; see `purge.py`). A miss looked
up with `lead` also takes the fill lock in the same script, so processes sharing the server run the
handler once per key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from asgi_guard.core.http import CachedResponse
from asgi_guard.stages.cache.control import secondary
from asgi_guard.stages.cache.store import MISGUESSED, WAIT, Filling, Hit, Misguessed
from asgi_guard.state.valkey import ScriptCall, ValkeyBackend, lua

_GET = lua(__package__, "cache_get", retry_safe=True)  # reads; a lost reply's lock only makes the retry wait
_SET = lua(__package__, "cache_set", retry_safe=True)  # writes the same variant and tags again
_PURGE = lua(__package__, "cache_purge", retry_safe=True)  # deleting twice deletes the same entries
_KEYS_REMEMBERED = 1024  # per namespace: keys whose Vary names differ from the route's guess


class ValkeyCacheStore:
    __slots__ = (
        "_algo",
        "_backend",
        "_by_key",
        "_capacity",
        "_entry_prefix",
        "_expiry",
        "_guess",
        "_lock_ms",
        "_lock_prefix",
        "_names",
        "_order",
        "_seq",
        "_tag_prefix",
        "_ttl_ms",
    )

    def __init__(
        self,
        backend: ValkeyBackend,
        namespace: str,
        algo: str,
        capacity: int,
        ttl: float,
        fill_lock: float = 5.0,
    ) -> None:
        self._backend = backend
        base = backend.key("cache", namespace)
        self._entry_prefix = f"{base}:e:"
        self._lock_prefix = f"{base}:l:"
        self._tag_prefix = f"{base}:g:"
        self._order = f"{base}:o"
        self._expiry = f"{base}:x"
        self._seq = f"{base}:n"
        self._names: tuple[str, ...] = ()  # the Vary names last seen here: the lookup's guess
        self._guess = ""  # the same, comma-joined (as the entry holds them)
        self._by_key: dict[str, str] = {}  # keys whose names differ from the route's guess
        self._algo = algo
        self._capacity = capacity
        self._ttl_ms = max(1, int(ttl * 1000))
        self._lock_ms = max(1, int(fill_lock * 1000))

    def _keys(self, key: str) -> tuple[str, str, str, str, str]:
        return (self._entry_prefix + key, self._order, self._expiry, self._seq, self._lock_prefix + key)

    def lookup_call(self, key: str, lead: bool, prints: Mapping[str, str] | None) -> ScriptCall:
        """The lookup of `key` as one script call (for `run`, or to ride another stage's round trip).

        It carries a guess of the entry's Vary names (the route's last seen) and the variant the
        request's fingerprint `prints` selects under that guess: a right guess reads the entry once,
        and neither the request's headers nor their digests travel (cache_get.lua)."""
        guess = self._by_key.get(key)
        if guess is None:
            guess, names = self._guess, self._names
        else:
            names = tuple(guess.split(",")) if guess else ()
        args = (
            key,
            self._algo,
            self._lock_ms if lead else 0,
            self._backend.script_now(),
            guess,
            secondary(names, prints if prints is not None else {}),
        )
        return (_GET, self._keys(key), args)

    async def get(
        self, key: str, lead: bool = False, prints: Mapping[str, str] | None = None
    ) -> Hit | Filling | None:
        """As the Protocol says; a wrong guess of the Vary names looks up again with the entry's
        own, and when they changed once more in between, answers WAIT (the stage polls again)."""
        found = self.decode(await self._backend.run(*self.lookup_call(key, lead, prints)), key)
        if found is MISGUESSED:
            found = self.decode(await self._backend.run(*self.lookup_call(key, lead, prints)), key)
        return WAIT if found is MISGUESSED else found

    def decode(self, found: Any, key: str | None = None) -> Hit | Filling | Misguessed | None:
        """cache_get's answer for `key`: the hit, None (a miss; locked when asked to lead), WAIT,
        or MISGUESSED (the entry has other Vary names, now remembered: look up again)."""
        if found == 0 and not isinstance(found, list):
            return WAIT
        if not found:
            return None
        if len(found) == 1:
            self._remember(found[0], key)
            return MISGUESSED
        raw, age_ms, ttl_ms, names = found
        self._remember(names, key)
        return CachedResponse.decode(raw), max(0, int(age_ms)) / 1000, max(0, int(ttl_ms)) / 1000

    async def set(
        self,
        key: str,
        value: CachedResponse,
        variant: str = "",
        names: Sequence[str] = (),
        tags: Sequence[str] = (),
        max_variants: int = 16,
    ) -> list[str]:
        self._remember(",".join(names), key)
        now = self._backend.script_now()
        evicted = await self._backend.run(
            _SET,
            self._keys(key),
            (
                key,
                value.encode(),
                self._ttl_ms,
                self._capacity,
                self._algo,
                self._entry_prefix,
                variant or secondary(names, {}),
                ",".join(names),
                max_variants,
                self._tag_prefix,
                now,
                0 if now == "" else self._backend.gc_slack_ms,  # a test clock: keys outlive its time
                *tags,
            ),
        )
        return [v.decode() if isinstance(v, bytes) else str(v) for v in evicted or ()]

    def _remember(self, names: str | bytes, key: str | None = None) -> None:
        """Keep the Vary names an entry of this route had, as the next lookup's guess: the route's
        (the last seen), and the key's own when they differ from the route's (a route whose keys
        vary differently, e.g. compression only of large bodies, would otherwise guess wrong on
        every other lookup: two round trips a hit). Up to `_KEYS_REMEMBERED` keys, oldest first out."""
        text = names.decode() if isinstance(names, bytes) else names
        by_key = self._by_key
        if key is not None and (text != self._guess or key in by_key):
            by_key.pop(key, None)
            by_key[key] = text
            if len(by_key) > _KEYS_REMEMBERED:
                del by_key[next(iter(by_key))]
        if text != self._guess:
            self._guess = text
            self._names = tuple(text.split(",")) if text else ()

    async def unlock(self, key: str) -> None:
        await self._backend.call(self._backend.client.delete(self._lock_prefix + key))

    @property
    def backend(self) -> ValkeyBackend:
        return self._backend

    def purge_call(self, keys: Sequence[str], tags: Sequence[str]) -> ScriptCall:
        """The purge of `keys` and of the entries tagged `tags`, as one script call (one slot)."""
        return (
            _PURGE,
            (self._order, self._expiry),
            (self._entry_prefix, self._tag_prefix, len(keys), *keys, *tags),
        )

    async def purge(self, keys: Sequence[str] = (), tags: Sequence[str] = ()) -> int:
        if not keys and not tags:
            return 0
        return int(await self._backend.run(*self.purge_call(keys, tags)))

    async def clear(self) -> int:
        return int(
            await self._backend.run(
                _PURGE, (self._order, self._expiry), (self._entry_prefix, self._tag_prefix, -1)
            )
        )
