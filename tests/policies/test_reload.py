"""Reloading routes.toml in one process: validated, swapped at once, counters carried over, the old
config kept (and said so) when the new one is wrong; in-flight requests finish on their config."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import httpx
import pytest
from guardkit import UNCROSSED_WINDOW
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_guard import GuardSettings, RouteRegistry, install
from asgi_guard.reload import RouteReloader, install_reload
from asgi_guard.state import MemoryBackend

TOKEN = "admin-token-for-tests-0123456789"


def routes(limit: int, extra: str = "") -> str:
    return f"""
[routes.items]
path = "/items"
methods = ["GET"]
{extra}
[routes.items.rate_limit]
enabled = true
algo = "fixed_window"
key_by = ["route"]
fixed_window = {{ limit = {limit}, window = {UNCROSSED_WINDOW} }}
"""


gate: asyncio.Event | None = None


async def items(request: Request) -> JSONResponse:
    if request.query_params.get("wait") and gate is not None:
        await gate.wait()
    return JSONResponse({"ok": True})


def build(tmp_path: Path, limit: int, *, watch: bool = False) -> tuple[Starlette, RouteReloader, Path]:
    file = tmp_path / "routes.toml"
    file.write_text(routes(limit))
    app = Starlette(routes=[Route("/items", items)])
    install(app, RouteRegistry.from_file(file), GuardSettings(_env_file=None), backend=MemoryBackend())  # type: ignore[call-arg]
    reloader = install_reload(app, file, watch=watch, sighup=False, admin_token=TOKEN)
    return app, reloader, file


def client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


def policy(response: httpx.Response) -> str:
    return response.headers["ratelimit-policy"]


async def test_reload_changes_the_limit_and_counters_carry_over(tmp_path: Path) -> None:
    app, reloader, file = build(tmp_path, 10)
    async with client(app) as http:
        used = [await http.get("/items") for _ in range(4)]
        assert policy(used[0]) == f'"fixed_window";q=10;w={UNCROSSED_WINDOW}'
        file.write_text(routes(5))
        assert (await reloader.reload()).ok
        after = await http.get("/items")
        assert policy(after) == f'"fixed_window";q=5;w={UNCROSSED_WINDOW}'
        assert after.headers["ratelimit"].startswith('"fixed_window";r=0;')  # 4 counted before + this one
        assert (await http.get("/items")).status_code == 429
        file.write_text(routes(3))  # shrunk below what was used: the next decision refuses
        assert (await reloader.reload()).ok
        assert (await http.get("/items")).status_code == 429
        file.write_text(routes(8))
        assert (await reloader.reload()).ok
        statuses = [(await http.get("/items")).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]  # 5 used, 8 allowed


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("[routes.items\npath =", "TOML"),
        (routes(0), "greater than or equal to 1"),
        (routes(5).replace("fixed_window = {", "fixed_windw = {"), "fixed_windw"),
        (routes(5, 'security = { auth_type_required = "jwt" }'), "jwt"),  # a pipeline that cannot be built
        (routes(5).replace('path = "/items"', 'path = "/nowhere"'), "match no app route"),  # unbindable
    ],
)
async def test_a_bad_reload_is_rejected_and_the_old_config_serves(
    tmp_path: Path, caplog, bad: str, why: str
) -> None:  # type: ignore[no-untyped-def]
    app, reloader, file = build(tmp_path, 10)
    async with client(app) as http:
        assert (await http.get("/items")).status_code == 200
        file.write_text(bad)
        with caplog.at_level(logging.ERROR, logger="asgi_guard.reload"):
            answer = await http.post("/_guard/reload", headers={"authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert why.lower() in answer.json()["detail"].lower()
        assert any("rejected" in r.message and "previous config" in r.message for r in caplog.records)
        still = await http.get("/items")
        assert still.status_code == 200
        assert policy(still) == f'"fixed_window";q=10;w={UNCROSSED_WINDOW}'
        assert still.headers["ratelimit"].startswith('"fixed_window";r=8;')
        assert reloader.failures == 1 and reloader.reloads == 0


async def test_admin_endpoint_needs_the_token_and_post(tmp_path: Path) -> None:
    app, _, file = build(tmp_path, 10)
    async with client(app) as http:
        assert (await http.post("/_guard/reload")).status_code == 401
        assert (
            await http.post("/_guard/reload", headers={"authorization": "Bearer nope"})
        ).status_code == 401
        assert (
            await http.get("/_guard/reload", headers={"authorization": f"Bearer {TOKEN}"})
        ).status_code == 405
        file.write_text(routes(7))
        ok = await http.post("/_guard/reload", headers={"authorization": f"Bearer {TOKEN}"})
        assert ok.json() == {"reloaded": True, "routes": 1}
        assert policy(await http.get("/items")) == f'"fixed_window";q=7;w={UNCROSSED_WINDOW}'


async def test_an_in_flight_request_finishes_on_its_config(tmp_path: Path) -> None:
    global gate
    gate = asyncio.Event()
    app, reloader, file = build(tmp_path, 10)
    try:
        async with client(app) as http:
            slow = asyncio.create_task(http.get("/items?wait=1"))
            await asyncio.sleep(0.05)  # it passed the limit and waits in the handler
            file.write_text(routes(5))
            assert (await reloader.reload()).ok
            assert policy(await http.get("/items")) == f'"fixed_window";q=5;w={UNCROSSED_WINDOW}'
            gate.set()
            assert policy(await slow) == f'"fixed_window";q=10;w={UNCROSSED_WINDOW}'
    finally:
        gate = None


async def test_the_file_watch_applies_a_change_within_a_second(tmp_path: Path) -> None:
    app, reloader, file = build(tmp_path, 10, watch=True)
    async with client(app) as http:
        assert (
            policy(await http.get("/items")) == f'"fixed_window";q=10;w={UNCROSSED_WINDOW}'
        )  # starts the watch
        await asyncio.sleep(0.3)
        file.write_text(routes(6))
        written = time.monotonic()
        while policy(await http.get("/items")) != f'"fixed_window";q=6;w={UNCROSSED_WINDOW}':
            assert time.monotonic() - written < 1.0, "the change was not applied within 1 s"
            await asyncio.sleep(0.02)
        await reloader.stop()
