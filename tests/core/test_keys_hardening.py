"""Hardening (issue 13, case 6): one injective escaping rule for every key part, so no client-chosen
value can equal another identity's part (the fallback identity `~<ip>` above all)."""

from __future__ import annotations

from typing import Any

import httpx
from guardkit import UNCROSSED_WINDOW, guarded_app
from hypothesis import given
from hypothesis import strategies as st
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from asgi_guard import GuardSettings, JobConfig
from asgi_guard.config import RateLimitConfig
from asgi_guard.state import MemoryBackend, ValkeyBackend
from asgi_guard.state.keys import EVERYONE, NO_VALUE, fallback_identity, hash_tag, join, key_part

# Any text, lone surrogates and separators included (what a JWT subject or a JSON field may hold).
TEXT = st.text(alphabet=st.characters(codec=None, categories=None), max_size=140) | st.sampled_from(
    ["-", "~", "*", "#", "%", "%2D", "%7E", "~1.2.3.4", "a:b", "a|b", "{x}", "\ud800", "é", " "]
)


@given(TEXT, TEXT)
def test_key_part_is_injective(a: str, b: str) -> None:
    if a != b:
        assert key_part(a) != key_part(b)


@given(TEXT)
def test_no_value_equals_a_guard_made_part(value: str) -> None:
    part = key_part(value)
    assert part not in (NO_VALUE, EVERYONE)
    assert not part.startswith("~")
    assert part != fallback_identity("198.51.100.7")
    assert ":" not in part and "{" not in part and "}" not in part and "|" not in part
    part.encode("utf-8")  # always encodable: a lone surrogate cannot crash a backend call


@given(st.lists(TEXT, max_size=4), st.lists(TEXT, max_size=4))
def test_joined_parts_and_tags_are_injective(a: list[str], b: list[str]) -> None:
    if a != b:
        assert join(*a) != join(*b) or (not a and b == [""]) or (not b and a == [""])
        if a and b:
            assert hash_tag(*a) != hash_tag(*b)


@given(TEXT, st.lists(TEXT, max_size=2), TEXT, st.lists(TEXT, max_size=2))
def test_backend_keys_are_injective(tag_a: str, parts_a: list[str], tag_b: str, parts_b: list[str]) -> None:
    backend = ValkeyBackend("valkey://127.0.0.1:1")
    if (tag_a, parts_a) != (tag_b, parts_b) and len(parts_a) == len(parts_b):
        assert backend.key("c", tag_a, *parts_a) != backend.key("c", tag_b, *parts_b)
    # a (type, user) tag as credits uses it: no pair forges another
    if (tag_a, *parts_a[:1]) != (tag_b, *parts_b[:1]) and parts_a and parts_b:
        assert backend.key("credits", (tag_a, parts_a[0])) != backend.key("credits", (tag_b, parts_b[0]))


def test_common_values_keep_their_readable_form() -> None:
    assert key_part("alice@example.com") == "alice@example.com"
    assert key_part("203.0.113.9") == "203.0.113.9"
    assert key_part("~203.0.113.9") == "%7E203.0.113.9"
    assert key_part("-") == "%2D" and key_part("a-b") == "a-b"


async def test_a_header_value_cannot_spend_the_fallback_identitys_limit() -> None:
    """X-API-Key: ~198.51.100.7 sent by someone else must not exhaust 198.51.100.7's own limit."""

    async def ok(request: Request) -> Response:
        return PlainTextResponse("ok")

    config = JobConfig(
        endpoint_name="keyed",
        rate_limit=RateLimitConfig(
            enabled=True,
            algo="fixed_window",  # type: ignore[arg-type]
            fixed_window={"limit": 3, "window": UNCROSSED_WINDOW},  # type: ignore[arg-type]
            key_by=["route", "header:X-API-Key"],
        ),
    )
    app = guarded_app(
        ok, config, backend=MemoryBackend(), settings=GuardSettings(_env_file=None, metrics_path="")
    )  # type: ignore[call-arg]

    def client(ip: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(ip, 1234))
        return httpx.AsyncClient(transport=transport, base_url="http://t")

    async with client("203.0.113.9") as attacker, client("198.51.100.7") as victim:
        forged: list[Any] = [
            (await attacker.get("/job", headers={"x-api-key": "~198.51.100.7"})).status_code for _ in range(3)
        ]
        assert forged == [200, 200, 200]
        assert (await victim.get("/job")).status_code == 200, "the victim's own bucket is untouched"
