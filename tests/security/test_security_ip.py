"""IP allowlist and client address behind proxies: IPv4, IPv6, X-Forwarded-For, RFC 7239 Forwarded."""

from __future__ import annotations

from typing import Any

import pytest
from seckit import assert_problem, bearer, build_app, hs_settings, hs_token

from asgi_guard.core.proxies import parse_networks
from asgi_guard.stages.security.ip import forwarded_for, resolve_client_ip

ALLOW = {"ip_whitelist_enabled": True, "ip_allowlist": ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"]}
PROXIES = ["172.16.0.0/12", "fd00::/8"]


async def _get(make_client: Any, peer: str, headers: dict[str, str] | None = None, **settings: Any) -> Any:
    client = make_client(build_app(ALLOW, hs_settings(**settings)), client_addr=(peer, 40000))
    return await client.get("/r", headers=headers or {})


@pytest.mark.parametrize("peer", ["10.1.2.3", "192.0.2.7", "2001:db8::5", "::ffff:10.0.0.1"])
async def test_allowlisted(make_client: Any, peer: str) -> None:
    response = await _get(make_client, peer)
    assert response.status_code == 200
    assert response.json()["user_key"] == peer


@pytest.mark.parametrize("peer", ["192.168.1.1", "192.0.2.8", "2001:dead::1", "::1", "garbage"])
async def test_not_allowlisted(make_client: Any, peer: str) -> None:
    body = assert_problem(await _get(make_client, peer), 403, "ip-not-allowed")
    assert body["detail"] == "client address is not allowed"


async def test_spoofed_x_forwarded_for_from_an_untrusted_peer(make_client: Any) -> None:
    # No trusted proxies at all: the header is ignored.
    assert_problem(
        await _get(make_client, "203.0.113.9", {"X-Forwarded-For": "10.0.0.1"}), 403, "ip-not-allowed"
    )
    # Trusted proxies configured, but this peer is not one of them.
    response = await _get(
        make_client, "203.0.113.9", {"X-Forwarded-For": "10.0.0.1"}, trusted_proxies=PROXIES
    )
    assert_problem(response, 403, "ip-not-allowed")


async def test_real_client_behind_a_trusted_proxy(make_client: Any) -> None:
    response = await _get(make_client, "172.16.0.5", {"X-Forwarded-For": "10.9.9.9"}, trusted_proxies=PROXIES)
    assert response.status_code == 200
    assert response.json()["client_ip"] == "10.9.9.9"
    # Two trusted hops, and a forged left-most entry the client added itself.
    chain = {"X-Forwarded-For": "8.8.8.8, 10.9.9.9, 172.20.0.1"}
    response = await _get(make_client, "172.16.0.5", chain, trusted_proxies=PROXIES)
    assert response.json()["client_ip"] == "10.9.9.9"
    # A client outside the allowlist cannot hide behind an allowlisted address it writes itself.
    forged = {"X-Forwarded-For": "10.0.0.1, 8.8.8.8"}
    response = await _get(make_client, "172.16.0.5", forged, trusted_proxies=PROXIES)
    assert_problem(response, 403, "ip-not-allowed")


async def test_trusted_proxy_without_header_is_the_client(make_client: Any) -> None:
    response = await _get(make_client, "172.16.0.5", trusted_proxies=PROXIES)
    assert_problem(response, 403, "ip-not-allowed")


async def test_rfc7239_forwarded_with_ipv6(make_client: Any) -> None:
    headers = {"Forwarded": 'for=8.8.8.8, for="[2001:db8:cafe::17]:4711";proto=https;by=_proxy'}
    response = await _get(
        make_client, "fd00::1", headers, trusted_proxies=PROXIES, forwarded_header="forwarded"
    )
    assert response.status_code == 200
    assert response.json()["client_ip"] == "2001:db8:cafe::17"
    # When proxies write Forwarded, a client's own X-Forwarded-For is ignored.
    spoof = {"X-Forwarded-For": "10.0.0.1", "Forwarded": "for=8.8.8.8"}
    response = await _get(
        make_client, "fd00::1", spoof, trusted_proxies=PROXIES, forwarded_header="forwarded"
    )
    assert_problem(response, 403, "ip-not-allowed")


async def test_allowlist_runs_before_jwt(make_client: Any) -> None:
    route = {**ALLOW, "auth_type_required": "jwt"}
    inside = make_client(build_app(route), client_addr=("10.0.0.1", 1))
    outside = make_client(build_app(route), client_addr=("8.8.8.8", 1))
    assert (await inside.get("/r", headers=bearer(hs_token()))).status_code == 200
    assert_problem(await inside.get("/r"), 401, "missing-token", "invalid_request")
    assert_problem(await outside.get("/r", headers=bearer(hs_token())), 403, "ip-not-allowed")
    assert_problem(await outside.get("/r"), 403, "ip-not-allowed")


def _scope(peer: str, *headers: tuple[str, str]) -> dict[str, Any]:
    return {"client": (peer, 1), "headers": [(k.lower().encode(), v.encode()) for k, v in headers]}


def test_resolve_client_ip_edges() -> None:
    trusted = parse_networks(PROXIES)
    assert resolve_client_ip(_scope("172.16.0.1", ("X-Forwarded-For", "1.2.3.4:5678")), trusted) == "1.2.3.4"
    assert resolve_client_ip(_scope("172.16.0.1", ("X-Forwarded-For", "junk, 1.2.3.4")), trusted) == "1.2.3.4"
    assert (
        resolve_client_ip(_scope("172.16.0.1", ("X-Forwarded-For", "1.2.3.4, junk")), trusted) == "172.16.0.1"
    )
    assert resolve_client_ip(_scope("172.16.0.1", ("X-Forwarded-For", "172.16.0.9")), trusted) == "172.16.0.1"
    split = _scope("172.16.0.1", ("X-Forwarded-For", "9.9.9.9"), ("X-Forwarded-For", "1.2.3.4"))
    assert resolve_client_ip(split, trusted) == "1.2.3.4"
    unknown = _scope("172.16.0.1", ("Forwarded", "for=unknown"))
    assert resolve_client_ip(unknown, trusted, "forwarded") == "172.16.0.1"
    assert resolve_client_ip({"client": None, "headers": []}, trusted) == "unknown"


def test_forwarded_for_parsing() -> None:
    assert forwarded_for("for=192.0.2.60;proto=http;by=203.0.113.43") == ["192.0.2.60"]
    assert forwarded_for('For="[2001:db8:cafe::17]:4711"') == ["2001:db8:cafe::17"]
    assert forwarded_for("for=192.0.2.43, for=198.51.100.17") == ["192.0.2.43", "198.51.100.17"]
    assert forwarded_for("proto=https, for=_hidden") == ["", "_hidden"]
    assert forwarded_for('for="192.0.2.1:8080"') == ["192.0.2.1"]
