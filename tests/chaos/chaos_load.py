"""The chaos run's client side: a bounded, paced async load across users, routes and failure modes.

Open loop: request i is due at `start + i / rate`; at most `concurrency` are in flight (a late slot
delays the next request, never drops it). Every request carries its own `X-Request-ID`, so each
client record joins the server's journal and the topic's events. Nothing here retries.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt

CLIENT_TIMEOUT = 10.0  # no request may stay unanswered longer than this (handler_timeout is 0.5 s)
DISCONNECT_AFTER = 0.15  # a hanging-up client closes its socket this long after sending


@dataclass
class Record:
    rid: str
    kind: str
    route: str  # io_job | job_status | chaos_job
    user: str
    resource: str
    t_send: float
    t_recv: float | None = None
    status: int | None = None
    headers: dict[str, list[str]] = field(default_factory=dict)
    content_type: str = ""
    problem: dict[str, Any] | None = None
    body: Any = None
    error: str | None = None
    bad: bool = False  # client garbage: must be a 4xx and free
    deliberate_5xx: bool = False  # the handler's own failure was asked for
    idem_key: str | None = None

    def header(self, name: str) -> str | None:
        values = self.headers.get(name)
        return values[0] if values else None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def replayed(self) -> bool:
        return self.header("idempotent-replayed") == "true"

    @property
    def limiter_allowed(self) -> bool:
        """Confirmed to have passed the rate limiter: its headers are there and it is not a 429."""
        return self.status is not None and self.status != 429 and self.header("ratelimit") is not None

    @property
    def problem_slug(self) -> str:
        kind = (self.problem or {}).get("type", "")
        return str(kind).rsplit(":", 1)[-1] if kind else ""


def make_token(secret: str, subject: str, **overrides: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": subject,
        "iat": now,
        "exp": now + 3600,
        "scope": "jobs:write jobs:read",
        "roles": ["admin", "db_user"],
        "amr": ["pwd", "mfa"],
    }
    claims.update(overrides)
    return jwt.encode(claims, secret, algorithm="HS256")


def _bad_tokens(secret: str) -> dict[str, str]:
    now = int(time.time())
    return {
        "token_garbage": "abc.def.ghi",
        "token_huge_exp": make_token(secret, "mallory", exp=10**400),
        "token_str_exp_expired": make_token(secret, "mallory", exp=str(now - 120)),
        "token_wrong_key": make_token("not-the-secret-" * 4, "mallory"),
        "token_alg_none": jwt.encode({"sub": "mallory", "exp": now + 3600}, None, algorithm="none"),
    }


BAD_BODIES: dict[str, bytes] = {
    "body_malformed_json": b'{"resource_id": "1", "secret_value": ',
    "body_lone_surrogate": b'{"resource_id":"1","secret_value":"\\ud800"}',
    "body_secret_not_a_string": b'{"resource_id":"1","secret_value":{}}',
    "body_invalid_utf8": b'{"resource_id":"1","secret_value":"\xff\xfe"}',
    "body_deep_nesting": b'{"resource_id":"1","secret_value":"x","other_data":'
    + b"[" * 5000
    + b"]" * 5000
    + b"}",
    "body_huge_number": b'{"resource_id":"1","secret_value":"x","other_data":' + b"9" * 5000 + b"}",
    "body_duplicate_keys": b'{"resource_id":"1","secret_value":"x","secret_value":{}}',
}


@dataclass
class LoadPlan:
    base_url: str
    secret: str
    users: list[str]
    total: int = 2400
    duration: float = 60.0
    concurrency: int = 24
    resources: int = 3
    seed: int = 13


class Load:
    """Runs the plan; `records` holds one Record per request, in sending order."""

    def __init__(self, plan: LoadPlan) -> None:
        self.plan = plan
        self.rng = random.Random(plan.seed)
        self.records: list[Record] = []
        self.tokens = {user: make_token(plan.secret, user) for user in plan.users}
        self.bad_tokens = _bad_tokens(plan.secret)
        self.idem_done: list[tuple[str, str, str]] = []  # (user, resource, key) to retry later
        host, port = plan.base_url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.kinds: list[tuple[float, Callable[[], Any]]] = [
            (30, self.io_job),
            (14, self.job_status),
            (14, lambda: self.chaos("ok")),
            (6, lambda: self.chaos("bg")),
            (3, lambda: self.chaos("fail")),
            (2, lambda: self.chaos("raise")),
            (3, lambda: self.chaos("slow")),
            (5, self.chaos_idempotent),
            (3, self.chaos_idempotent_retry),
            (4, self.hang_up),
            (6, self.bad_body),
            (5, self.bad_token),
            (1, self.oversize),
        ]
        self._weights = [w for w, _ in self.kinds]

    # -- driver -----------------------------------------------------------------------------------
    async def run(self) -> None:
        plan = self.plan
        limits = httpx.Limits(max_connections=plan.concurrency, max_keepalive_connections=plan.concurrency)
        timeout = httpx.Timeout(CLIENT_TIMEOUT)
        self.client = httpx.AsyncClient(base_url=plan.base_url, limits=limits, timeout=timeout)
        gate = asyncio.Semaphore(plan.concurrency)
        start = time.monotonic()
        tasks = []
        try:
            for i in range(plan.total):
                due = start + i * plan.duration / plan.total
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await gate.acquire()
                make = self.rng.choices(self.kinds, self._weights)[0][1]
                task = asyncio.create_task(self._one(make(), gate))
                tasks.append(task)
            await asyncio.gather(*tasks)
        finally:
            await self.client.aclose()

    async def _one(self, coro: Any, gate: asyncio.Semaphore) -> None:
        try:
            await coro
        finally:
            gate.release()

    # -- helpers ----------------------------------------------------------------------------------
    def _user(self) -> str:
        return self.rng.choice(self.plan.users)

    def _resource(self) -> str:
        return f"r{self.rng.randrange(self.plan.resources)}"

    async def _send(
        self,
        record: Record,
        method: str,
        path: str,
        *,
        token: str | None,
        body: bytes | None = None,
        extra: dict[str, str] | None = None,
    ) -> Record:
        headers = {"x-request-id": record.rid}
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        if body is not None:
            headers["content-type"] = "application/json"
        headers.update(extra or {})
        self.records.append(record)
        record.t_send = time.time()
        try:
            response = await self.client.request(method, path, content=body, headers=headers)
        except httpx.TimeoutException:
            record.error = "timeout"
            return record
        except httpx.HTTPError as exc:
            record.error = f"{type(exc).__name__}: {exc}"
            return record
        finally:
            record.t_recv = time.time()
        record.status = response.status_code
        for name, value in response.headers.multi_items():
            record.headers.setdefault(name.lower(), []).append(value)
        record.content_type = response.headers.get("content-type", "")
        try:
            parsed = response.json()
        except ValueError:
            parsed = None
        record.body = parsed
        if record.content_type.startswith("application/problem+json") and isinstance(parsed, dict):
            record.problem = parsed
        return record

    def _new(self, kind: str, route: str, user: str, resource: str, **kw: Any) -> Record:
        return Record(uuid.uuid4().hex, kind, route, user, resource, 0.0, **kw)

    # -- request kinds ----------------------------------------------------------------------------
    async def io_job(self) -> None:
        user, res = self._user(), self._resource()
        body = json.dumps({"resource_id": res, "secret_value": "s3cr3t", "other_data": "x"}).encode()
        await self._send(
            self._new("io_job", "io_job", user, res),
            "POST",
            f"/jobs/{res}",
            token=self.tokens[user],
            body=body,
        )

    async def job_status(self) -> None:
        user, res = self._user(), self._resource()
        await self._send(
            self._new("job_status", "job_status", user, res), "GET", f"/jobs/{res}", token=self.tokens[user]
        )

    async def chaos(self, mode: str, idem_key: str | None = None, kind: str | None = None) -> Record:
        user, res = self._user(), self._resource()
        record = self._new(kind or f"chaos_{mode}", "chaos_job", user, res, idem_key=idem_key)
        record.deliberate_5xx = mode in ("fail", "raise")
        extra = {"idempotency-key": idem_key} if idem_key else {}
        if mode == "raise":
            # uvicorn closes a connection after an exception escaped the app, racing the client's
            # next request on it; that is the server's doing (the guard's own escapes still show)
            extra["connection"] = "close"
        body = json.dumps({"mode": mode}).encode()
        await self._send(record, "POST", f"/chaos/{res}", token=self.tokens[user], body=body, extra=extra)
        return record

    async def chaos_idempotent(self) -> None:
        key = uuid.uuid4().hex
        record = await self.chaos("ok", idem_key=key, kind="chaos_idem_first")
        self.idem_done.append((record.user, record.resource, key))

    async def chaos_idempotent_retry(self) -> None:
        """The same key, user, path and body again: a replay (or a 409 while the first runs)."""
        if not self.idem_done:
            await self.chaos_idempotent()
            return
        user, res, key = self.rng.choice(self.idem_done)
        record = self._new("chaos_idem_retry", "chaos_job", user, res, idem_key=key)
        body = json.dumps({"mode": "ok"}).encode()
        await self._send(
            record,
            "POST",
            f"/chaos/{res}",
            token=self.tokens[user],
            body=body,
            extra={"idempotency-key": key},
        )

    async def bad_body(self) -> None:
        user, res = self._user(), self._resource()
        kind = self.rng.choice(sorted(BAD_BODIES))
        body = BAD_BODIES[kind].replace(b'"resource_id":"1"', f'"resource_id":"{res}"'.encode())
        record = self._new(kind, "io_job", user, res, bad=True)
        await self._send(record, "POST", f"/jobs/{res}", token=self.tokens[user], body=body)

    async def bad_token(self) -> None:
        res = self._resource()
        kind = self.rng.choice([*sorted(self.bad_tokens), "token_missing"])
        token = self.bad_tokens.get(kind)
        record = self._new(kind, "io_job", "mallory", res, bad=True)
        body = json.dumps({"resource_id": res, "secret_value": "x"}).encode()
        await self._send(record, "POST", f"/jobs/{res}", token=token, body=body)

    async def oversize(self) -> None:
        user, res = self._user(), self._resource()
        body = json.dumps({"resource_id": res, "secret_value": "x" * 1_200_000}).encode()
        await self._send(
            self._new("body_oversize", "io_job", user, res, bad=True),
            "POST",
            f"/jobs/{res}",
            token=self.tokens[user],
            body=body,
        )

    async def hang_up(self) -> None:
        """A raw socket: send a request to a handler that takes 0.4 s, close after 0.15 s."""
        user, res = self._user(), self._resource()
        record = self._new("hang_up", "chaos_job", user, res)
        body = json.dumps({"mode": "linger"}).encode()
        request = (
            f"POST /chaos/{res} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\n"
            f"authorization: Bearer {self.tokens[user]}\r\nx-request-id: {record.rid}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        ).encode() + body
        self.records.append(record)
        record.t_send = time.time()
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        except OSError as exc:
            record.error = f"connect: {exc}"
            record.t_recv = time.time()
            return
        writer.write(request)
        try:
            line = await asyncio.wait_for(reader.readline(), DISCONNECT_AFTER)
            if line:
                record.status = int(line.split()[1])
        except TimeoutError:
            pass
        finally:
            writer.close()
            record.t_recv = time.time()
        record.error = "hung_up" if record.status is None else "hung_up_after_status"
