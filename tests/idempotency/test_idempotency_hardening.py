"""Hardening (issue 13, case 7): on the embedded backend another client's flood of distinct
Idempotency-Keys cannot evict a victim's record (a per-principal quota inside the shared bound)."""

from __future__ import annotations

import httpx
from guardkit import guarded_app
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from asgi_guard import GuardSettings, JobConfig
from asgi_guard.config import IdempotencyConfig
from asgi_guard.stages.credits import Anonymous, credit_store
from asgi_guard.state import MemoryBackend
from asgi_guard.state.memory import ExpiringStore

VICTIM, ATTACKER = "198.51.100.7", "203.0.113.9"


async def test_a_flood_of_keys_from_one_client_does_not_evict_anothers_record() -> None:
    backend = MemoryBackend(max_keys=50, max_keys_per_owner=20)
    store = credit_store(backend)
    await store.set(Anonymous(VICTIM), 10)  # anonymous clients: balances by address
    await store.set(Anonymous(ATTACKER), 10_000)
    calls: list[str] = []

    async def handler(request: Request) -> Response:
        calls.append(request.headers["idempotency-key"])
        return JSONResponse({"n": len(calls)}, status_code=201)

    config = JobConfig(
        endpoint_name="orders", required_credits=1, idempotency=IdempotencyConfig(enabled=True)
    )
    app = guarded_app(
        handler,
        config,
        backend=backend,
        methods=("POST",),
        settings=GuardSettings(_env_file=None, metrics_path=""),
    )  # type: ignore[call-arg]

    def client(ip: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(ip, 1)), base_url="http://t")

    async with client(VICTIM) as victim, client(ATTACKER) as attacker:
        first = await victim.post("/job", headers={"idempotency-key": "pay-1"})
        for i in range(200):
            await attacker.post("/job", headers={"idempotency-key": f"flood-{i}"})
        retry = await victim.post("/job", headers={"idempotency-key": "pay-1"})
    assert first.status_code == retry.status_code == 201
    assert retry.headers.get("idempotent-replayed") == "true"
    assert calls.count("pay-1") == 1
    assert await store.balance(Anonymous(VICTIM)) == 9, "charged once"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcd"), st.integers(0, 30)), max_size=120))
def test_per_owner_quota_never_touches_others(writes: list[tuple[str, int]]) -> None:
    """Whatever the others write, an owner's newest `quota` entries stay while the total is in bound."""
    quota, total = 5, 1000
    store = ExpiringStore(lambda: 0.0, total, max_per_owner=quota)
    mine: list[str] = []
    for owner, n in writes:
        key = f"{owner}:{n}"
        store.set(key, n, owner=owner)
        if owner == "a":
            if key in mine:
                mine.remove(key)
            mine.append(key)
        assert store.owned("a") <= quota
    for key in mine[-quota:]:
        assert key in store
