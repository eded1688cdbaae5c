"""Per-owner bounds of the embedded cache store (issue 13, "bounded state per client").

Every entry is owned by the principal whose request stored it (`ctx.user_key`: the JWT subject,
else the client IP). Two rules keep one client's flood of distinct keys from evicting another's:

1. quota: an owner holding `max_per_owner` entries that stores a new key loses its own victim
   (by the route's algorithm, among its own entries);
2. fairness: when the namespace is full, room is taken from the owner holding the most entries
   (the writer itself when it holds as many as anyone), its own victim by the route's algorithm.

Without owners (every entry owner None) the store is exactly the single-namespace reference
(tests/cache/test_cache_properties.py); with owners it is the owner-aware reference.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from binding.bindkit import JWT, bearer, settings
from cache_helpers import guard
from hypothesis import given
from hypothesis import strategies as st
from propkit import LOCAL, T0, Clock
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_guard import JobConfig, RouteRegistry, install
from asgi_guard.core.http import CachedResponse
from asgi_guard.core.runtime import GuardRuntime
from asgi_guard.stages.cache.memory import MemoryCacheStore
from asgi_guard.stages.cache.reference import ALGOS, ReferenceCache
from asgi_guard.stages.cache.stores import build_store
from asgi_guard.state import MemoryBackend


def value(name: str) -> CachedResponse:
    return CachedResponse(200, (), name.encode())


def memory(algo: str, capacity: int, quota: int | None, clock: Clock | None = None) -> MemoryCacheStore:
    store = build_store(
        MemoryBackend(clock=clock or Clock(T0)), "q", algo, capacity, 300.0, max_per_owner=quota
    )
    assert isinstance(store, MemoryCacheStore)
    return store


async def test_an_owner_past_its_quota_loses_its_own_entry() -> None:
    store = memory("lru", capacity=10, quota=2)
    await store.set("a1", value("a1"), owner="alice")
    await store.set("b1", value("b1"), owner="bob")
    await store.set("b2", value("b2"), owner="bob")
    assert await store.set("b3", value("b3"), owner="bob") == ["b1"]  # bob's own oldest
    assert await store.get("a1") is not None
    assert store.owned("bob") == 2 and store.owned("alice") == 1


async def test_a_full_namespace_takes_room_from_the_heaviest_owner() -> None:
    store = memory("fifo", capacity=4, quota=None)
    await store.set("a1", value("a1"), owner="alice")
    for name in ("m1", "m2", "m3"):
        await store.set(name, value(name), owner="mallory")
    # alice (1 entry) stores into a full namespace: mallory holds the most, her oldest goes
    assert await store.set("a2", value("a2"), owner="alice") == ["m1"]
    # mallory (2) and alice (2) tie: the writer pays, with its own oldest
    assert await store.set("m4", value("m4"), owner="mallory") == ["m2"]
    assert await store.set("a3", value("a3"), owner="alice") == ["a1"]


async def test_a_rewrite_keeps_the_entrys_owner() -> None:
    store = memory("lru", capacity=10, quota=3)
    await store.set("page", value("v1"), owner="alice")
    await store.set("page", value("v2"), owner="mallory")  # a refresh of a shared entry
    assert store.owned("alice") == 1 and store.owned("mallory") == 0


async def test_hits_order_an_owners_own_entries() -> None:
    store = memory("lru", capacity=10, quota=2)
    await store.set("a1", value("a1"), owner="alice")
    await store.set("a2", value("a2"), owner="alice")
    await store.get("a1")
    assert await store.set("a3", value("a3"), owner="alice") == ["a2"]  # least recently used of hers


async def test_purge_and_expiry_free_the_owners_quota() -> None:
    clock = Clock(T0)
    store = memory("lru", capacity=10, quota=2, clock=clock)
    await store.set("a1", value("a1"), owner="alice", tags=["t"])
    await store.set("a2", value("a2"), owner="alice")
    assert await store.purge(tags=["t"]) == 1
    assert store.owned("alice") == 1
    clock.now += 301  # a2 expires
    assert await store.set("a3", value("a3"), owner="alice") == []
    assert store.owned("alice") == 1
    await store.clear()
    assert store.owned("alice") == 0 and len(store) == 0


async def test_a_store_without_owners_is_unchanged() -> None:
    """Owner None everywhere: one account, the route's algorithm over the whole namespace."""
    store = memory("lru", capacity=2, quota=None)
    await store.set("a", value("a"))
    await store.set("b", value("b"))
    await store.get("a")
    assert await store.set("c", value("c")) == ["b"]


# -- properties -------------------------------------------------------------------------------------
OWNERS = ["alice", "bob", "mallory", "trent"]
gap = st.one_of(st.just(0.0), st.sampled_from([0.5, 3.0]))
step = st.tuples(
    gap, st.sampled_from(["get", "set", "set", "set"]), st.integers(0, 7), st.sampled_from(OWNERS)
)
config = st.tuples(st.integers(1, 8), st.one_of(st.none(), st.integers(1, 4)), st.sampled_from([1.0, 10.0]))


@LOCAL
@given(cfg=config, plan=st.lists(step, min_size=1, max_size=60))
async def test_memory_matches_the_owner_aware_reference(
    cfg: tuple[int, int | None, float], plan: list[Any]
) -> None:
    capacity, quota, ttl = cfg
    for algo in ALGOS:
        clock = Clock(T0)
        store = build_store(MemoryBackend(clock=clock), "own", algo, capacity, ttl, max_per_owner=quota)
        reference = ReferenceCache(algo, capacity, ttl, quota=quota)
        for n, (delta, op, key_n, owner) in enumerate(plan):
            clock.now += delta
            key = f"{owner}/{key_n}" if key_n < 6 else f"shared/{key_n}"  # shared keys: any owner writes
            if op == "set":
                got: Any = await store.set(key, value(f"{key}@{n}"), owner=owner)
                want: Any = reference.set(key, value(f"{key}@{n}"), clock.now, owner=owner)
            else:
                got, want = await store.get(key), reference.get(key, clock.now)
            assert got == want, (algo, n, op, key, owner, got, want)


@LOCAL
@given(cfg=config, plan=st.lists(step, min_size=1, max_size=80))
async def test_no_owner_loses_entries_to_another_while_within_its_share(
    cfg: tuple[int, int | None, float], plan: list[Any]
) -> None:
    """Whatever the others store: (1) nobody holds more than its quota; (2) a write by one owner
    evicts another's entry only from an owner holding the most entries, and more than the writer;
    (3) so when the namespace can hold every owner's full quota, no owner ever loses an entry
    because of another owner."""
    capacity, quota, ttl = cfg
    for algo in ALGOS:
        clock = Clock(T0)
        store = build_store(MemoryBackend(clock=clock), "fair", algo, capacity, ttl, max_per_owner=quota)
        owner_of: dict[str, str] = {}
        for delta, op, key_n, writer in plan:
            clock.now += delta
            key = f"{writer}/{key_n}"
            if op == "get":
                await store.get(key)
                continue
            live = {k: o for k, o in owner_of.items() if await store.get(k) is not None}
            held = Counter(live.values())
            evicted = await store.set(key, value(key), owner=writer)
            owner_of[key] = owner_of.get(key, writer) if key in live else writer
            for victim in evicted:
                loser = live[victim]
                if quota is not None:
                    assert all(store.owned(o) <= quota for o in OWNERS), (algo, store_counts(store))
                if loser == writer:
                    continue
                assert held[loser] == max(held.values()) and held[loser] > held[writer], (
                    algo,
                    victim,
                    loser,
                    writer,
                    held,
                )
                assert quota is None or capacity < quota * len(OWNERS), (algo, capacity, quota, held)


def store_counts(store: MemoryCacheStore) -> dict[str, int]:
    return {o: store.owned(o) for o in OWNERS}


# -- through the stack ------------------------------------------------------------------------------
async def test_the_routes_quota_bounds_each_client(make_client: Any) -> None:
    """`cache.max_entries_per_owner` reaches the store: a client past it loses its own oldest entry
    although the namespace has room; another client's entries stay."""

    async def item(request: Request) -> JSONResponse:
        return JSONResponse({"id": request.path_params["resource_id"]})

    config = JobConfig(
        endpoint_name="items",
        cache={"enabled": True, "algo": "lru", "lru": {"capacity": 100}, "max_entries_per_owner": 3},
    )
    app = guard(MemoryBackend(), [Route("/items/{resource_id}", item)], {"/items/{resource_id}": config})
    alice = make_client(app, client_addr=("198.51.100.7", 4000))
    bob = make_client(app, client_addr=("203.0.113.9", 4000))
    await bob.get("/items/b")
    for n in range(5):
        await alice.get(f"/items/a{n}")
    cached = {n: (await alice.get(f"/items/a{n}")).headers["x-cache"] for n in (2, 3, 4)}
    assert cached == {2: "HIT", 3: "HIT", 4: "HIT"}
    assert (await bob.get("/items/b")).headers["x-cache"] == "HIT"
    assert (await alice.get("/items/a0")).headers["x-cache"] == "MISS"  # her own oldest went


async def test_principals_own_their_entries_on_a_shared_route(make_client: Any) -> None:
    """JWT subjects (not addresses) own entries: on a `shared` route two users behind one address
    are still two owners, so one user's flood does not evict the other's entry."""

    async def item(request: Request) -> JSONResponse:
        return JSONResponse({"id": request.path_params["resource_id"]})

    registry = RouteRegistry()
    cache = {"enabled": True, "shared": True, "algo": "fifo", "fifo": {"capacity": 32}}
    registry.register("/items/{resource_id}", JobConfig(endpoint_name="items", cache=cache, **JWT))
    app = Starlette(routes=[Route("/items/{resource_id}", item)])
    install(app, registry, runtime=GuardRuntime(settings(metrics_path=""), MemoryBackend()))
    c = make_client(app)  # one address for both users
    alice, mallory = bearer("alice"), bearer("mallory")
    await c.get("/items/mine", headers=alice)
    for n in range(500):
        await c.get(f"/items/flood-{n}", headers=mallory)
    assert (await c.get("/items/mine", headers=alice)).headers["x-cache"] == "HIT"
    assert (await c.get("/items/mine", headers=mallory)).headers["x-cache"] == "HIT"  # shared
