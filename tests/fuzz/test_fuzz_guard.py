"""Fuzz every stage's input in-process: never a 5xx from the guard, every rejection problem+json 4xx
carrying the request id, and the request id on every answer of a registered route.

Requests go straight to the ASGI app (raw header bytes, raw paths and bodies that httpx would refuse
or normalise). Examples per test: 120 in CI (derandomized, so CI is reproducible), or
ASGI_GUARD_FUZZ_EXAMPLES=N for a longer random hunt.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fuzz_app import USERS, build_app, token
from fuzz_strategies import authorization, header_sets, json_bodies, paths, tokens
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from asgi_guard.stages.credits import credit_store

pytestmark = pytest.mark.fuzz

_ON_DEMAND = os.environ.get("ASGI_GUARD_FUZZ_EXAMPLES")
EXAMPLES = int(_ON_DEMAND or 120)
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=_ON_DEMAND is None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
GOOD_BODY = b'{"resource_id":"r1","secret_value":"s3cr3t","other_data":"x"}'


@dataclass
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    error: str | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)

    def header(self, name: bytes) -> list[bytes]:
        return [v for k, v in self.headers if k.lower() == name]


class Target:
    """One app on one event loop for the whole module; `call` runs a raw ASGI request."""

    def __init__(self, tmp: Path, forwarded_header: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.app, self.runtime = build_app(tmp / f"outbox-{forwarded_header}.sqlite3", forwarded_header)
        self.loop.run_until_complete(self._start())

    async def _start(self) -> None:
        # The first request builds the middleware stack (its stages register start-up hooks) and
        # starts the runtime; only then can credits be granted.
        await self._call("GET", "/warm-up", None, [], b"", ("127.0.0.1", 1))
        store = credit_store(self.runtime.backend)
        for user in USERS:
            await store.grant(user, 10**9)

    def call(
        self,
        method: str,
        path: str = "/fuzz/r1",
        raw_path: bytes | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
        body: bytes = b"",
        client: tuple[str, int] = ("127.0.0.1", 40000),
    ) -> Answer:
        return self.loop.run_until_complete(self._call(method, path, raw_path, headers or [], body, client))

    async def _call(
        self,
        method: str,
        path: str,
        raw_path: bytes | None,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        client: tuple[str, int],
    ) -> Answer:
        if body and not any(k == b"content-type" for k, _ in headers):
            headers = [*headers, (b"content-type", b"application/json")]
        headers = [*headers, (b"content-length", str(len(body)).encode()), (b"host", b"testserver")]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": raw_path if raw_path is not None else path.encode("utf-8", "surrogateescape"),
            "root_path": "",
            "query_string": b"",
            "headers": headers,
            "client": client,
            "server": ("testserver", 80),
        }
        done = asyncio.Event()
        sent_body = False
        messages: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            messages.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                done.set()

        error = None
        try:
            async with asyncio.timeout(10):
                await self.app(scope, receive, send)
        except TimeoutError:
            error = "no complete response within 10 s"
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        finally:
            done.set()
        start = next((m for m in messages if m["type"] == "http.response.start"), None)
        if start is None:
            return Answer(500, [], b"", error or "no response", messages)
        payload = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
        return Answer(start["status"], list(start.get("headers", [])), payload, error, messages)

    def close(self) -> None:
        self.loop.run_until_complete(self.runtime.shutdown())
        self.loop.close()


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    t = Target(tmp_path_factory.mktemp("fuzz"), "x-forwarded-for")
    yield t
    t.close()


@pytest.fixture(scope="module")
def target_forwarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    t = Target(tmp_path_factory.mktemp("fuzz-fwd"), "forwarded")
    yield t
    t.close()


def assert_guard_contract(answer: Answer, registered: bool = True) -> None:
    """Never a 5xx (the handlers never fail); a guard rejection is problem+json with the request id;
    the request id is on every answer of a registered route, exactly once."""
    context = f"status {answer.status}, error {answer.error}, body {answer.body[:300]!r}"
    assert answer.status < 500, f"server error from the guard: {context}"
    assert answer.error is None, f"an exception escaped the stack: {context}"
    ids = answer.header(b"x-request-id")
    if registered:
        assert len(ids) == 1, f"X-Request-ID {ids} on a registered route: {context}"
    content_type = b"".join(answer.header(b"content-type"))
    if content_type.startswith(b"application/problem+json"):
        assert 400 <= answer.status < 500, context
        doc = json.loads(answer.body)
        for key in ("type", "title", "status", "detail"):
            assert key in doc, f"problem body lacks {key}: {context}"
        assert doc["status"] == answer.status, context
        assert ids and doc.get("request_id") == ids[0].decode("latin-1"), f"request id mismatch: {context}"
        if answer.status == 401:
            assert answer.header(b"www-authenticate"), f"401 without WWW-Authenticate: {context}"
    elif 400 <= answer.status < 500 and registered:
        # not problem+json, so it must be the app's own answer (FastAPI: JSON with "detail")
        doc = json.loads(answer.body) if content_type.startswith(b"application/json") else None
        assert isinstance(doc, dict) and "detail" in doc, (
            f"a 4xx neither problem+json nor the app's: {context}"
        )


def _auth(user: str = "alice") -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {token(user)}".encode())]


def test_fuzz_baseline_requests_succeed(target: Target) -> None:
    """The fuzz target itself works: a good write and a good read are 200."""
    write = target.call("POST", headers=_auth(), body=GOOD_BODY)
    assert write.status == 200, write.body
    read = target.call("GET", headers=_auth())
    assert read.status == 200, read.body
    assert_guard_contract(write)
    assert_guard_contract(read)


@FUZZ
@given(headers=header_sets(), method=st.sampled_from(["GET", "POST"]), good_token=st.booleans())
def test_fuzz_hostile_headers(
    target: Target, headers: list[tuple[bytes, bytes]], method: str, good_token: bool
) -> None:
    """Authorization, X-Forwarded-For, Forwarded, Idempotency-Key, Cache-Control, X-Request-ID,
    X-MFA-TOTP and X-API-Key with hostile values, alone or beside a valid token."""
    base = _auth() if good_token else []
    answer = target.call(method, headers=base + headers, body=GOOD_BODY if method == "POST" else b"")
    assert_guard_contract(answer)


@FUZZ
@given(headers=header_sets())
def test_fuzz_forwarded_header_parsing(target_forwarded: Target, headers: list[tuple[bytes, bytes]]) -> None:
    """The same, with `Forwarded` (RFC 7239) as the trusted proxies' header."""
    answer = target_forwarded.call("GET", headers=_auth() + headers)
    assert_guard_contract(answer)


@FUZZ
@given(auth=authorization, method=st.sampled_from(["GET", "POST"]))
def test_fuzz_jwt_never_500_and_never_accepted(target: Target, auth: str, method: str) -> None:
    """Mutated tokens and correctly signed tokens with wrongly typed claims: a 401/403 or, for a
    token that is in fact valid, a 2xx; never a 5xx."""
    headers = [(b"authorization", auth.encode("latin-1", "replace"))]
    answer = target.call(method, headers=headers, body=GOOD_BODY if method == "POST" else b"")
    assert_guard_contract(answer)


def _signed(**claims: Any) -> str:
    return token("alice", **claims)


@FUZZ
@given(raw=tokens)
@example(raw=_signed(exp=10**400))  # issue 13 case 5: OverflowError -> 500
@example(raw=_signed(exp=str(int(time.time()) - 120)))  # issue 13 case 5: a string exp, expired
@example(raw=_signed(nbf=str(int(time.time()) + 3600)))
def test_fuzz_jwt_claim_types_are_numeric_dates(target: Target, raw: str) -> None:
    """A token is accepted only if its exp/nbf/iat are JSON numbers in range (RFC 7519 section 2,
    NumericDate) and its exp lies in the future."""
    answer = target.call("GET", headers=[(b"authorization", f"Bearer {raw}".encode("latin-1", "replace"))])
    assert_guard_contract(answer)
    if answer.status == 200:
        import base64

        part = raw.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        for name in ("exp", "nbf", "iat"):
            if name in claims:
                value = claims[name]
                assert isinstance(value, int | float) and not isinstance(value, bool), (
                    f"accepted a token whose {name} is {type(value).__name__} {value!r}"
                )
                assert abs(value) < 10**12, f"accepted a token whose {name} is out of range: {value!r}"


@FUZZ
@given(body=json_bodies(), idem=st.booleans())
@example(body=b'{"resource_id":"1","secret_value":"\\ud800"}', idem=False)  # issue 13 case 3
@example(body=b'{"resource_id":"1","secret_value":{}}', idem=False)  # issue 13 case 8
@example(body=b'{"resource_id":"1","secret_value":"x","secret_value":{}}', idem=False)
@example(body=b'{"resource_id":"1","secret_value":"x","other_data":NaN}', idem=False)  # not JSON (RFC 8259)
@example(body=b'{"resource_id":"1","secret_value":"x","other_data":1e99999}', idem=False)  # overflows
def test_fuzz_json_bodies(target: Target, body: bytes, idem: bool) -> None:
    """Deep nesting, huge numbers, invalid UTF-8, lone surrogates, duplicate keys, non-objects and
    plain junk on the route that buffers, encrypts and charges: a 4xx (problem+json, or the app's own
    422), never a 5xx; a body the app's model refuses is never a 2xx."""
    headers = _auth()
    if idem:
        headers.append((b"idempotency-key", os.urandom(8).hex().encode()))
    answer = target.call("POST", headers=headers, body=body)
    assert_guard_contract(answer)
    if answer.status < 300:
        doc = json.loads(body)  # it was accepted, so it must be valid for the model
        assert isinstance(doc, dict) and isinstance(doc.get("secret_value"), str), (
            f"accepted a body the model refuses: {body[:200]!r}"
        )


@FUZZ
@given(path=paths(), method=st.sampled_from(["GET", "POST", "HEAD", "PUT"]))
def test_fuzz_paths(target: Target, path: tuple[str, bytes], method: str) -> None:
    """Control characters, %0A, //, encoded slashes and dot segments near the guarded route: never a
    5xx; whatever reaches a guarded handler went through its policy (no token here, so never 2xx)."""
    scope_path, raw_path = path
    answer = target.call(
        method, path=scope_path, raw_path=raw_path, body=GOOD_BODY if method != "GET" else b""
    )
    assert_guard_contract(answer, registered=False)
    assert not (200 <= answer.status < 300), f"{method} {raw_path!r} answered {answer.status} without a token"


SECRET_HEADERS = {
    b"x-mfa-totp": b"918273",
    b"cookie": b"session=cookie-secret-4711",
    b"x-api-key": b"api-key-secret-4711",
}


def test_app_500_carries_the_request_id(target: Target) -> None:
    """Issue 13 case 9: the app's own 500 on a registered route carries X-Request-ID too."""
    answer = target.call("POST", path="/boom/r1", headers=[(b"x-request-id", b"boom-1")], body=b"{}")
    assert answer.status == 500
    assert answer.header(b"x-request-id") == [b"boom-1"], answer.headers


def test_secrets_in_an_app_exception_never_reach_guard_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 13 case 9: X-MFA-TOTP, Cookie, X-API-Key and Authorization values that end up in an
    exception message are redacted from every asgi_guard log record (the access log's `error`)."""
    bearer = token("bob")
    headers = [(b"authorization", f"Bearer {bearer}".encode()), *SECRET_HEADERS.items()]
    with caplog.at_level("DEBUG", logger="asgi_guard"):
        fresh = Target(tmp_path, "x-forwarded-for")  # built while access logging is on
        try:
            fresh.call("POST", path="/boom/r1", headers=headers, body=b"{}")
        finally:
            fresh.close()
    records = [r for r in caplog.records if r.name.startswith("asgi_guard")]
    assert records, "the guard logged nothing about a failed request"
    text = "\n".join(r.getMessage() + " " + json.dumps(r.__dict__, default=str) for r in records)
    for value in [*SECRET_HEADERS.values(), bearer.encode()]:
        assert value.decode() not in text, f"{value!r} appears in the guard's logs"


def test_fuzz_guard_redacts_mfa_header_from_logs(target: Target, caplog: pytest.LogCaptureFixture) -> None:
    """X-MFA-TOTP, Authorization, Cookie and X-API-Key values never reach a log record."""
    secrets = {
        b"x-mfa-totp": b"918273",
        b"cookie": b"session=cookie-secret-4711",
        b"x-api-key": b"api-key-secret-4711",
    }
    bearer = token("bob", amr=None)
    headers = [(b"authorization", f"Bearer {bearer}".encode()), *secrets.items()]
    with caplog.at_level("DEBUG"):
        target.call("POST", headers=headers, body=GOOD_BODY)
        target.call("POST", headers=headers, body=b"{broken")
    text = "\n".join(r.getMessage() + " " + json.dumps(r.__dict__, default=str) for r in caplog.records)
    for value in [*secrets.values(), bearer.encode()]:
        assert value.decode() not in text, f"{value!r} appears in the logs"
