"""`trusted_proxies=["unix"]`: the peer on a unix socket (ASGI `client` None) as a trusted proxy, with
the same rules as an IP proxy; without it, a peer with no address is "unknown" and never a proxy.
Served by a real uvicorn --uds: tests/core/test_unix_socket.py."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from guardkit import UNCROSSED_WINDOW
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_guard import GuardSettings, JobConfig, RouteRegistry, install
from asgi_guard.core.proxies import (
    UNKNOWN,
    ClientResolver,
    parse_proxies,
    peer_trusted,
    resolve_client_ip,
)
from asgi_guard.state.memory import MemoryBackend

ROOT = Path(__file__).resolve().parents[2]
NETS = ["10.0.0.0/8", "fd00::/8"]
PROXY = ("10.255.0.1", 4000)  # stands in for the socket peer when comparing with an IP proxy


def _scope(client: Any, *headers: tuple[str, str]) -> dict[str, Any]:
    return {"client": client, "headers": [(k.lower().encode(), v.encode()) for k, v in headers]}


# -- settings ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("entry", ["unix", "UNIX", " unix "])
def test_unix_is_a_trusted_proxies_entry(entry: str) -> None:
    settings = GuardSettings(_env_file=None, trusted_proxies=[entry, "10.0.0.0/8"])  # type: ignore[call-arg]
    trusted = parse_proxies(settings.trusted_proxies)
    assert trusted.unix and [str(n) for n in trusted.networks] == ["10.0.0.0/8"]


def test_unix_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASGI_GUARD_TRUSTED_PROXIES", '["unix", "192.0.2.1"]')
    assert parse_proxies(GuardSettings(_env_file=None).trusted_proxies).unix  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "entry", ["unix:/run/app.sock", "/run/app.sock", "localhost", "10.0.0.0/33", "", "*"]
)
def test_other_garbage_fails_at_settings_time(entry: str) -> None:
    with pytest.raises(ValidationError, match="neither a CIDR nor an address"):
        GuardSettings(_env_file=None, trusted_proxies=["unix", entry])  # type: ignore[call-arg]


# -- the resolver -----------------------------------------------------------------------------------
hop = st.one_of(
    st.ip_addresses().map(str),
    st.sampled_from(["10.1.2.3", "10.9.9.9", "fd00::5", "198.51.100.7", "junk", "unknown", ""]),
)


@given(chain=st.lists(hop, max_size=6), header=st.sampled_from(["x-forwarded-for", "forwarded"]))
def test_a_trusted_unix_peer_follows_the_ip_proxy_rules(chain: list[str], header: Any) -> None:
    """Same walk as for a trusted IP proxy; where that answers the proxy itself, the socket peer is UNKNOWN."""
    value = ", ".join(chain) if header == "x-forwarded-for" else ", ".join(f'for="{h}"' for h in chain)
    headers = [(header, value)] if chain else []
    unix = resolve_client_ip(_scope(None, *headers), parse_proxies(["unix", *NETS]), header)
    by_ip = resolve_client_ip(_scope(PROXY, *headers), parse_proxies([*NETS, "10.255.0.1"]), header)
    assert unix == (UNKNOWN if by_ip == PROXY[0] else by_ip)
    # untrusted, the socket peer's header is never read: a client cannot choose its address
    assert resolve_client_ip(_scope(None, *headers), parse_proxies(NETS), header) == UNKNOWN
    assert resolve_client_ip(_scope(("", 0), *headers), parse_proxies(NETS), header) == UNKNOWN


def test_unix_trusts_no_ip_peer() -> None:
    trusted = parse_proxies(["unix"])
    scope = _scope(("203.0.113.5", 1), ("x-forwarded-for", "198.51.100.7"))
    assert resolve_client_ip(scope, trusted) == "203.0.113.5"
    assert not peer_trusted(scope, trusted)
    assert peer_trusted(_scope(None), trusted)
    assert not peer_trusted(_scope(None), parse_proxies(NETS))


def test_an_unknown_peer_is_logged_once_per_process(caplog: pytest.LogCaptureFixture) -> None:
    ClientResolver.warned = False
    resolver = ClientResolver([])
    with caplog.at_level(logging.WARNING, "asgi_guard.proxies"):
        assert resolver(_scope(("127.0.0.1", 1))) == "127.0.0.1"
        assert not caplog.records
        for _ in range(3):
            assert resolver(_scope(None)) == UNKNOWN
        assert ClientResolver([])(_scope(None)) == UNKNOWN
    assert len(caplog.records) == 1
    assert 'trusted_proxies=["unix"]' in caplog.records[0].getMessage()
    ClientResolver.warned = False
    with caplog.at_level(logging.WARNING, "asgi_guard.proxies"):
        assert ClientResolver(["unix"])(_scope(None, ("x-forwarded-for", "198.51.100.7"))) == "198.51.100.7"
    assert len(caplog.records) == 1


def test_no_module_reads_the_peer_but_the_resolver() -> None:
    """One reading of the client address: a stage that read `scope["client"]` itself would key on the
    proxy (or on "unknown") instead of the client."""
    pattern = re.compile(r"""scope(\.get\(|\[)\s*["']client["']""")
    readers = sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "asgi_guard").rglob("*.py")
        if pattern.search(path.read_text())
    )
    assert readers == ["asgi_guard/core/proxies.py"]


# -- in process: every concern reads the resolved address -------------------------------------------
async def _who(request: Request) -> JSONResponse:
    return JSONResponse({"client": request.state.guard.client_ip, "host": request.headers.get("host")})


def _app(config: JobConfig, trusted: list[str]) -> Starlette:
    app = Starlette(routes=[Route("/r", _who, methods=["GET", "POST"])])
    registry = RouteRegistry()
    registry.register("/r", config, methods=["GET", "POST"])
    settings = GuardSettings(_env_file=None, trusted_proxies=trusted)  # type: ignore[call-arg]
    install(app, registry, settings, backend=MemoryBackend())
    return app


def _socket_client(app: Starlette) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=None)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def test_rate_limit_keys_each_forwarded_client() -> None:
    limit = JobConfig(
        rate_limit={
            "enabled": True,
            "algo": "fixed_window",
            "fixed_window": {"limit": 1, "window": UNCROSSED_WINDOW},
        }
    )
    async with _socket_client(_app(limit, ["unix"])) as client:
        assert (await client.get("/r", headers={"x-forwarded-for": "198.51.100.1"})).status_code == 200
        assert (await client.get("/r", headers={"x-forwarded-for": "198.51.100.1"})).status_code == 429
        assert (await client.get("/r", headers={"x-forwarded-for": "198.51.100.2"})).status_code == 200
    async with _socket_client(_app(limit, [])) as client:  # untrusted: one pooled (stricter) bucket
        assert (await client.get("/r", headers={"x-forwarded-for": "198.51.100.1"})).status_code == 200
        assert (await client.get("/r", headers={"x-forwarded-for": "198.51.100.2"})).status_code == 429


async def test_idempotency_fail_open_runs_without_replay_for_an_unknown_client() -> None:
    config = JobConfig(idempotency={"enabled": True, "fail_open": True})
    async with _socket_client(_app(config, [])) as client:
        first = await client.post("/r", headers={"idempotency-key": "k"}, content=b"x")
        second = await client.post("/r", headers={"idempotency-key": "k"}, content=b"x")
    assert first.status_code == second.status_code == 200
    assert "idempotency-replayed" not in second.headers


async def test_cache_and_cost_trust_the_unix_peer_only_with_unix() -> None:
    rl = {
        "enabled": True,
        "algo": "token_bucket",
        "token_bucket": {"rate_limit": 10, "refill_rate": 0.001},
        "cost": {"source": "header", "name": "X-Upstream-Cost", "default": 5},
    }
    for trusted, remaining in ((["unix"], 8), ([], 5)):
        async with _socket_client(_app(JobConfig(rate_limit=rl), trusted)) as client:
            response = await client.get(
                "/r", headers={"x-upstream-cost": "2", "x-forwarded-for": "198.51.100.3"}
            )
        assert response.headers["ratelimit"].startswith(f'"token_bucket";r={remaining};'), (
            trusted,
            response.headers,
        )
    cache = JobConfig(cache={"enabled": True, "trust_forwarded_host": True, "default": {"cache_ttl": 60}})
    for trusted, hit in ((["unix"], "MISS"), ([], "HIT")):
        async with _socket_client(_app(cache, trusted)) as client:
            await client.get("/r")
            again = await client.get("/r", headers={"x-forwarded-host": "shop.example"})
        assert again.headers["x-cache"] == hit, trusted
