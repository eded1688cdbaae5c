"""MFA: by `amr`, or by a step-up TOTP code (good, wrong, replayed, outside the window), memory and Valkey."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor.totp import TOTP
from seckit import assert_problem, bearer, build_app, hs_settings, hs_token

from asgi_guard.core.runtime import GuardRuntime
from asgi_guard.stages.security import set_totp_secret_resolver
from asgi_guard.state import MemoryBackend

SECRET_B32 = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
MFA_ROUTE = {"auth_type_required": "jwt", "mfa_required": True}
T0 = 1_700_000_000.0


def code_at(at: float, secret: str = SECRET_B32) -> str:
    return TOTP(base64.b32decode(secret), 6, SHA1(), 30, enforce_key_length=False).generate(int(at)).decode()


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def mfa_app(clock: Clock, route: dict[str, Any] | None = None, resolver: Any = None) -> Any:
    runtime = GuardRuntime(hs_settings(), MemoryBackend(clock=clock))
    if resolver is not False:
        set_totp_secret_resolver(runtime, resolver or {"alice": SECRET_B32}.get)
    return build_app(route or MFA_ROUTE, runtime=runtime)


def step_up(code: str, **extra: Any) -> dict[str, str]:
    return {**bearer(hs_token(**extra)), "X-MFA-TOTP": code}


async def test_mfa_missing(make_client: Any) -> None:
    client = make_client(mfa_app(Clock()))
    response = await client.get("/r", headers=bearer(hs_token(amr=["pwd"])))
    body = assert_problem(response, 401, "mfa-required", "insufficient_user_authentication")
    assert body["reason"] == "mfa_missing"
    assert body["title"] == "Multi-Factor Authentication Required"


@pytest.mark.parametrize("amr", [["pwd", "mfa"], ["otp"], ["hwk", "pwd"], ["pwd", "fpt"]])
async def test_mfa_by_amr(make_client: Any, amr: list[str]) -> None:
    client = make_client(mfa_app(Clock()))
    response = await client.get("/r", headers=bearer(hs_token(amr=amr)))
    assert response.status_code == 200
    assert response.json()["amr"] == sorted(amr)


async def test_amr_values_are_configurable(make_client: Any) -> None:
    client = make_client(mfa_app(Clock(), {**MFA_ROUTE, "mfa_amr_values": ["hwk"]}))
    assert (await client.get("/r", headers=bearer(hs_token(amr=["hwk"])))).status_code == 200
    assert_problem(
        await client.get("/r", headers=bearer(hs_token(amr=["otp"]))),
        401,
        "mfa-required",
        "insufficient_user_authentication",
    )


async def test_totp_good_then_replayed(make_client: Any) -> None:
    clock = Clock()
    client = make_client(mfa_app(clock))
    code = code_at(clock.now)
    response = await client.get("/r", headers=step_up(code, amr=["pwd"]))
    assert response.status_code == 200
    assert response.json()["amr"] == ["otp", "pwd"]
    clock.now += 5  # the same code, still inside its window, a second time
    replay = await client.get("/r", headers=step_up(code))
    assert (
        assert_problem(replay, 401, "mfa-required", "insufficient_user_authentication")["reason"]
        == "totp_replayed"
    )
    # An older code that is still inside the drift window is refused too.
    older = await client.get("/r", headers=step_up(code_at(clock.now - 30)))
    assert (
        assert_problem(older, 401, "mfa-required", "insufficient_user_authentication")["reason"]
        == "totp_replayed"
    )
    clock.now += 30
    assert (await client.get("/r", headers=step_up(code_at(clock.now)))).status_code == 200


async def test_totp_wrong_and_malformed(make_client: Any) -> None:
    clock = Clock()
    client = make_client(mfa_app(clock))
    good = code_at(clock.now)
    wrong = f"{(int(good) + 1) % 1_000_000:06d}"
    for code, reason in [(wrong, "totp_invalid"), ("12345", "totp_invalid"), ("12a456", "totp_invalid")]:
        response = await client.get("/r", headers=step_up(code))
        assert (
            assert_problem(response, 401, "mfa-required", "insufficient_user_authentication")["reason"]
            == reason
        )
    assert (await client.get("/r", headers=step_up(good))).status_code == 200


async def test_totp_replayed_outside_the_window(make_client: Any) -> None:
    clock = Clock()
    client = make_client(mfa_app(clock))
    code = code_at(clock.now)
    clock.now += 30  # one step of drift is tolerated
    assert (await client.get("/r", headers=step_up(code))).status_code == 200
    clock.now += 90  # long past its window: wrong, whether used before or not
    response = await client.get("/r", headers=step_up(code))
    body = assert_problem(response, 401, "mfa-required", "insufficient_user_authentication")
    assert body["reason"] == "totp_invalid"
    assert body["detail"] == "the TOTP code is wrong or expired"
    fresh_unused_but_old = code_at(clock.now - 120)
    response = await client.get("/r", headers=step_up(fresh_unused_but_old))
    assert (
        assert_problem(response, 401, "mfa-required", "insufficient_user_authentication")["reason"]
        == "totp_invalid"
    )


async def test_totp_not_enrolled_and_no_resolver(make_client: Any) -> None:
    clock = Clock()
    client = make_client(mfa_app(clock))
    response = await client.get("/r", headers=step_up(code_at(clock.now), sub="bob"))
    body = assert_problem(response, 401, "mfa-required", "insufficient_user_authentication")
    assert body["reason"] == "totp_not_enrolled"
    plain = make_client(mfa_app(clock, resolver=False))
    response = await plain.get("/r", headers=step_up(code_at(clock.now)))
    assert (
        assert_problem(response, 401, "mfa-required", "insufficient_user_authentication")["reason"]
        == "mfa_missing"
    )


async def test_broken_resolver_is_503(make_client: Any) -> None:
    def broken(subject: str) -> str:
        raise RuntimeError("user store down")

    clock = Clock()
    client = make_client(mfa_app(clock, resolver=broken))
    assert_problem(await client.get("/r", headers=step_up(code_at(clock.now))), 503, "mfa-unavailable")


async def test_resolver_named_in_the_route_config(make_client: Any) -> None:
    clock = Clock()
    route = {**MFA_ROUTE, "mfa_totp_resolver": "sec_totp_resolver:lookup", "mfa_totp_header": "X-OTP"}
    client = make_client(mfa_app(clock, route, resolver=False))
    headers = {**bearer(hs_token()), "X-OTP": code_at(clock.now)}
    assert (await client.get("/r", headers=headers)).status_code == 200


async def test_mfa_comes_after_scopes(make_client: Any) -> None:
    clock = Clock()
    client = make_client(mfa_app(clock, {**MFA_ROUTE, "user_permissions_required": ["jobs:admin"]}))
    code = code_at(clock.now)
    response = await client.get("/r", headers=step_up(code))
    assert_problem(response, 403, "insufficient-scope", "insufficient_scope")
    # The code was not spent on a request that failed authorization.
    assert (await client.get("/r", headers=step_up(code, scope="jobs:admin"))).status_code == 200


@pytest.mark.valkey
async def test_totp_replay_is_refused_by_another_process_sharing_valkey(
    make_client: Any, valkey_url: str, key_prefix: str
) -> None:
    settings = hs_settings(valkey_url=valkey_url, key_prefix=key_prefix)
    apps = []
    for _ in range(2):
        runtime = GuardRuntime(settings)
        set_totp_secret_resolver(runtime, {"alice": SECRET_B32}.get)
        apps.append(build_app(MFA_ROUTE, runtime=runtime))
    first, second = make_client(apps[0]), make_client(apps[1])
    code = code_at(time.time())
    assert (await first.get("/r", headers=step_up(code))).status_code == 200
    replay = await second.get("/r", headers=step_up(code))
    assert (
        assert_problem(replay, 401, "mfa-required", "insufficient_user_authentication")["reason"]
        == "totp_replayed"
    )


@pytest.mark.valkey
async def test_totp_replay_store_down_is_503(make_client: Any, own_valkey: Any, key_prefix: str) -> None:
    runtime = GuardRuntime(hs_settings(valkey_url=own_valkey.url, key_prefix=key_prefix))
    set_totp_secret_resolver(runtime, {"alice": SECRET_B32}.get)
    client = make_client(build_app(MFA_ROUTE, runtime=runtime))
    assert (await client.get("/r", headers=step_up(code_at(time.time())))).status_code == 200
    own_valkey.nodes[0].stop()
    response = await client.get("/r", headers=step_up(code_at(time.time() + 30)))
    assert_problem(response, 503, "backend-unavailable")
    # amr-based MFA needs no backend at all.
    assert (await client.get("/r", headers=bearer(hs_token(amr=["mfa"])))).status_code == 200


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


async def test_wrong_codes_lock_the_subject_out(make_client: Any) -> None:
    clock = Clock()
    client = make_client(mfa_app(clock, {**MFA_ROUTE, "mfa_totp_max_failures": 3, "mfa_totp_lockout": 300}))
    good = code_at(clock.now)
    for _ in range(3):
        response = await client.get("/r", headers=step_up(_wrong(good)))
        assert assert_problem(response, 401, "mfa-required", "insufficient_user_authentication")[
            "reason"
        ] == ("totp_invalid")
    locked = await client.get("/r", headers=step_up(_wrong(good)))
    assert assert_problem(locked, 429, "mfa-locked")["reason"] == "totp_locked"
    assert locked.headers["retry-after"] == "300"
    clock.now += 100
    still = await client.get("/r", headers=step_up(code_at(clock.now)))  # even the right code
    assert_problem(still, 429, "mfa-locked")
    assert still.headers["retry-after"] == "200"
    # Another user is not affected; amr-based MFA is not affected.
    assert (await client.get("/r", headers=bearer(hs_token(amr=["mfa"])))).status_code == 200
    clock.now += 201
    assert (await client.get("/r", headers=step_up(code_at(clock.now)))).status_code == 200


async def test_a_good_code_resets_the_wrong_code_count(make_client: Any) -> None:
    clock = Clock()
    client = make_client(mfa_app(clock, {**MFA_ROUTE, "mfa_totp_max_failures": 2}))
    for _ in range(2):
        await client.get("/r", headers=step_up(_wrong(code_at(clock.now))))
        assert (await client.get("/r", headers=step_up(code_at(clock.now)))).status_code == 200
        clock.now += 30


@pytest.mark.valkey
async def test_lockout_is_shared_through_valkey(make_client: Any, valkey_url: str, key_prefix: str) -> None:
    settings = hs_settings(valkey_url=valkey_url, key_prefix=key_prefix)
    clients = []
    for _ in range(2):
        runtime = GuardRuntime(settings)
        set_totp_secret_resolver(runtime, {"alice": SECRET_B32}.get)
        route = {**MFA_ROUTE, "mfa_totp_max_failures": 2, "mfa_totp_lockout": 60}
        clients.append(make_client(build_app(route, runtime=runtime)))
    good = code_at(time.time())
    for client in clients:
        response = await client.get("/r", headers=step_up(_wrong(good)))
        assert_problem(response, 401, "mfa-required", "insufficient_user_authentication")
    locked = await clients[0].get("/r", headers=step_up(_wrong(good)))
    assert_problem(locked, 429, "mfa-locked")
    assert 0 < int(locked.headers["retry-after"]) <= 60
    assert_problem(await clients[1].get("/r", headers=step_up(code_at(time.time()))), 429, "mfa-locked")


@pytest.mark.cluster
async def test_totp_guard_on_a_valkey_cluster(
    make_client: Any, valkey_cluster_url: str, key_prefix: str
) -> None:
    runtime = GuardRuntime(hs_settings(valkey_url=valkey_cluster_url, key_prefix=key_prefix))
    set_totp_secret_resolver(runtime, {"alice": SECRET_B32}.get)
    client = make_client(build_app({**MFA_ROUTE, "mfa_totp_max_failures": 1}, runtime=runtime))
    code = code_at(time.time())
    assert (await client.get("/r", headers=step_up(code))).status_code == 200
    replay = await client.get("/r", headers=step_up(code))
    assert (
        assert_problem(replay, 401, "mfa-required", "insufficient_user_authentication")["reason"]
        == "totp_replayed"
    )
    assert_problem(
        await client.get("/r", headers=step_up(_wrong(code))),
        401,
        "mfa-required",
        "insufficient_user_authentication",
    )
    assert_problem(await client.get("/r", headers=step_up(_wrong(code))), 429, "mfa-locked")
