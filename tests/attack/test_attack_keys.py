"""Attacks on state keys: one client spending or resetting what belongs to another.

Principals come in two kinds, a verified JWT subject and a client the guard knows only by its
address. A subject is chosen by the IdP (and, with self-service sign-up, often by the user), so it can
read like any address: every concern that keys state by who is asking must keep the kinds apart.
"""

from __future__ import annotations

import argparse
from typing import Any

import pytest
from binding.bindkit import JWT, bearer, client, settings
from guardkit import UNCROSSED_WINDOW
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from asgi_guard import JobConfig, RouteRegistry, install
from asgi_guard.core.runtime import GuardRuntime
from asgi_guard.stages.credits import Anonymous, credit_store
from asgi_guard.stages.credits.cli import run as credits_cli
from asgi_guard.stages.credits.store import account
from asgi_guard.state.keys import principal_part
from asgi_guard.state.memory import MemoryBackend

PEER = "127.0.0.1"  # what httpx's ASGITransport in bindkit.client reports as the client


async def ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def two_routes(anon: dict[str, Any], paid: dict[str, Any]) -> Starlette:
    """`/free-tier` (anonymous) and `/paid` (JWT) with the given sections."""
    registry = RouteRegistry()
    registry.register("/free-tier", JobConfig(endpoint_name="anon", **anon))
    registry.register("/paid", JobConfig(endpoint_name="paid", **paid, **JWT))
    return Starlette(routes=[Route("/free-tier", ok), Route("/paid", ok)]), registry  # type: ignore[return-value]


@pytest.fixture(params=["memory", "valkey"])
async def backend(request: pytest.FixtureRequest) -> Any:
    if request.param == "memory":
        yield MemoryBackend()
        return
    from asgi_guard.state import ValkeyBackend

    url, prefix = request.getfixturevalue("valkey_url"), request.getfixturevalue("key_prefix")
    valkey = ValkeyBackend(url, key_prefix=prefix)
    yield valkey
    await valkey.close()


async def test_anonymous_client_spends_the_credits_of_a_subject_named_like_its_ip(backend: Any) -> None:
    registry = RouteRegistry()
    registry.register("/free-tier", JobConfig(endpoint_name="anon", required_credits=1))
    registry.register("/paid", JobConfig(endpoint_name="paid", required_credits=1, **JWT))
    app = Starlette(routes=[Route("/free-tier", ok), Route("/paid", ok)])
    runtime = GuardRuntime(settings(), backend)
    install(app, registry, runtime=runtime)
    store = credit_store(backend)
    await store.set("127.0.0.1", 5)  # the paying customer whose IdP subject happens to be this string
    async with client(app) as c:  # an anonymous client connecting from 127.0.0.1
        anonymous = await c.get("/free-tier")
        assert (await c.get("/paid", headers=bearer("127.0.0.1"))).status_code == 200
    assert anonymous.status_code == 402, "the anonymous client must not reach the subject's balance"
    assert await store.balance("127.0.0.1") == 4


@pytest.mark.parametrize("subject", [PEER, "~" + PEER, "%7E" + PEER])
async def test_anonymous_balances_are_addressed_by_address_and_spent_by_that_client_only(
    subject: str,
) -> None:
    """An operator funds an anonymous client with `Anonymous(ip)` (or `credits set IP N --ip`); a
    subject that reads like the address, with or without the guard's marker, does not reach it."""
    registry = RouteRegistry()
    registry.register("/free-tier", JobConfig(endpoint_name="anon", required_credits=1))
    registry.register("/paid", JobConfig(endpoint_name="paid", required_credits=1, **JWT))
    app = Starlette(routes=[Route("/free-tier", ok), Route("/paid", ok)])
    backend = MemoryBackend()
    install(app, registry, runtime=GuardRuntime(settings(), backend))
    store = credit_store(backend)
    args = argparse.Namespace(
        credits_action="set", user=PEER, amount=2, credit_type="default", anonymous=True
    )
    assert await credits_cli(args, backend) == 2
    async with client(app) as c:
        assert (await c.get("/paid", headers=bearer(subject))).status_code == 402
        assert [(await c.get("/free-tier")).status_code for _ in range(3)] == [200, 200, 402]
    assert await store.balance(Anonymous(PEER)) == 0
    assert await store.balance(subject) == 0


async def test_anonymous_client_exhausts_the_rate_limit_of_a_subject_named_like_its_ip() -> None:
    """`key_by = ["user"]` counts one budget per user across routes: the anonymous client at
    127.0.0.1 must not spend the budget of the user whose subject is "127.0.0.1"."""
    limit = {
        "rate_limit": {
            "enabled": True,
            "algo": "fixed_window",
            "fixed_window": {"limit": 2, "window": UNCROSSED_WINDOW},
            "key_by": ["user"],
        }
    }
    for kind in ("user", "ip"):  # the `ip` part is the anonymous client's identity too
        section = {"rate_limit": {**limit["rate_limit"], "key_by": [kind]}}
        app, registry = two_routes(section, limit)  # type: ignore[misc]
        install(app, registry, runtime=GuardRuntime(settings(), MemoryBackend()))
        async with client(app) as c:
            assert [(await c.get("/free-tier")).status_code for _ in range(3)] == [200, 200, 429]
            victim = [(await c.get("/paid", headers=bearer(PEER))).status_code for _ in range(3)]
        assert victim == [200, 200, 429], kind


@given(
    a=st.one_of(
        st.tuples(st.just("sub"), st.text(max_size=40)), st.tuples(st.just("ip"), st.text(max_size=40))
    ),
    b=st.one_of(
        st.tuples(st.just("sub"), st.text(max_size=40)), st.tuples(st.just("ip"), st.text(max_size=40))
    ),
)
def test_principal_parts_are_injective_across_kinds(a: tuple[str, str], b: tuple[str, str]) -> None:
    def part(p: tuple[str, str]) -> str:
        kind, value = p
        return principal_part(value, "ignored") if kind == "sub" else principal_part(None, value)

    assert (part(a) == part(b)) == (a == b)
    assert part(a).isascii() and ":" not in part(a) and "|" not in part(a)


_users = st.one_of(st.text(max_size=30), st.builds(Anonymous, st.text(max_size=30)))


@given(a=_users, b=_users)
def test_credit_accounts_are_injective_across_kinds(a: str | Anonymous, b: str | Anonymous) -> None:
    assert (account(a) == account(b)) == (a == b)


@given(subject=st.text(max_size=30).filter(lambda s: not s.startswith("~")))
def test_a_subjects_account_is_the_subject_itself(subject: str) -> None:
    """Balances operators set by subject (and those stored by earlier versions) keep their names."""
    assert account(subject) == subject


@given(users=st.lists(_users, min_size=1, max_size=6, unique=True), data=st.data())
async def test_credit_balances_never_mix_across_users(users: list[str | Anonymous], data: Any) -> None:
    """Differential: grants to any mix of subjects and anonymous clients land on exactly that user."""
    store = credit_store(MemoryBackend())
    expected: dict[str | Anonymous, int] = {}
    for _ in range(data.draw(st.integers(1, 12))):
        user = data.draw(st.sampled_from(users))
        amount = data.draw(st.integers(0, 5))
        expected[user] = expected.get(user, 0) + amount
        await store.grant(user, amount)
    for user in users:
        assert await store.balance(user) == expected.get(user, 0)


_principal = st.one_of(
    st.tuples(st.just("sub"), st.text(max_size=30)),
    st.tuples(st.just("ip"), st.sampled_from(["127.0.0.1", "10.1.2.3", "2001:db8::1", "::ffff:10.1.2.3"])),
    st.tuples(st.just("ip"), st.text(max_size=30)),
)


@given(a=_principal, b=_principal)
def test_rate_limit_user_parts_are_injective_across_principal_kinds(
    a: tuple[str, str], b: tuple[str, str]
) -> None:
    """The rate limiter's own `user` part: equal only for the same subject, or the same client
    (the same IPv4 address or IPv6 /64)."""
    from types import SimpleNamespace

    from asgi_guard.core.context import Principal
    from asgi_guard.stages.rate_limit.stage import _user_part, client_block

    part = _user_part(64)

    def of(p: tuple[str, str]) -> str:
        kind, value = p
        if kind == "sub":
            ctx = SimpleNamespace(principal=Principal(value), client_ip="127.0.0.1")
        else:
            ctx = SimpleNamespace(principal=None, client_ip=value)
        return part(ctx, {}, None)  # type: ignore[arg-type]

    def who(p: tuple[str, str]) -> tuple[str, str]:
        return p if p[0] == "sub" else ("ip", client_block(p[1], 64))

    assert (of(a) == of(b)) == (who(a) == who(b))
