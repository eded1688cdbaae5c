"""Load mix for benchmarks/load_app.py (either stack): run by benchmarks/run_load.py, or by hand:

    BENCH_JWT_SECRET=... locust -f benchmarks/locustfile.py --headless -u 50 -r 50 -t 20s --host http://127.0.0.1:8000

Per request type (locust "name"), with the statuses that count as success (anything else is an error):
- anon read            GET /public/{0..49}, no token                                   200
- auth read            GET /items/{0..19} as one of 1,000 users with their own tokens   200
- POST job             POST /jobs/{0..9} as a funded user (user0..user199)              200 (429 if unlucky)
- POST job unfunded    as poor0..poor49 (no credits)                                   402 (429 if unlucky)
- POST job hot         hot-user on one resource, far above 5 per 10 s                   429 (200 for a few)
- bad token            GET /items/1 with a token signed by another key                  401

Per request type, the statuses seen, failures and every response time are written (raw and
summarised) to BENCH_STATUS_OUT (JSON) when locust quits (its own CSV is flushed once a second, so its last second can
be missing from it); run_load.py reads that file.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter, defaultdict
from typing import Any

import jwt
from locust import FastHttpUser, constant, events, task

SECRET = os.environ.get("BENCH_JWT_SECRET", "bench-secret-bench-secret-bench-secret")
READERS = int(os.environ.get("BENCH_READERS", "1000"))
FUNDED = int(os.environ.get("BENCH_FUNDED", "200"))
STATUS_OUT = os.environ.get("BENCH_STATUS_OUT")


def _token(sub: str, scope: str, key: str = SECRET) -> str:
    now = int(time.time())
    claims = {"sub": sub, "iat": now, "exp": now + 3600, "scope": scope}
    return "Bearer " + jwt.encode(claims, key, algorithm="HS256")


READ_TOKENS = [_token(f"user{i}", "items:read") for i in range(READERS)]
JOB_TOKENS = [_token(f"user{i}", "jobs:write") for i in range(FUNDED)]
POOR_TOKENS = [_token(f"poor{i}", "jobs:write") for i in range(50)]
HOT_TOKEN = _token("hot-user", "jobs:write")
BAD_TOKEN = _token("user1", "items:read", key="not-the-secret-not-the-secret-not-the-secret")

STATUSES: dict[str, Counter[int]] = defaultdict(Counter)
TIMES: dict[str, list[float]] = defaultdict(list)
FAILURES: Counter[str] = Counter()
WINDOW: dict[str, float] = {}


@events.test_start.add_listener
def _start(**_: Any) -> None:
    WINDOW["start"] = time.time()


@events.test_stop.add_listener
def _stop(**_: Any) -> None:
    WINDOW["stop"] = time.time()


@events.request.add_listener
def _count(name: str, response_time: float, response: Any = None, exception: Any = None, **_: Any) -> None:
    STATUSES[name][getattr(response, "status_code", 0) or 0] += 1
    TIMES[name].append(response_time)
    if exception is not None:
        FAILURES[name] += 1


def _pct(values: list[float], q: float) -> float:
    return round(values[min(len(values) - 1, int(q * len(values)))], 1) if values else 0.0


@events.quitting.add_listener
def _write(**_: Any) -> None:
    if not STATUS_OUT:
        return
    seconds = WINDOW.get("stop", time.time()) - WINDOW.get("start", time.time())
    summary: dict[str, Any] = {
        "seconds": round(seconds, 3),
        "types": {},
        # raw, so that run_load.py can merge several rounds of one stack
        "raw": {
            name: {
                "times": [round(t, 2) for t in TIMES[name]],
                "errors": FAILURES[name],
                "statuses": {str(k): v for k, v in STATUSES[name].items()},
            }
            for name in TIMES
        },
    }
    for name in [*TIMES, "Aggregated"]:
        values = sorted(TIMES[name]) if name != "Aggregated" else sorted(t for v in TIMES.values() for t in v)
        codes = STATUSES[name] if name != "Aggregated" else sum(STATUSES.values(), Counter())
        summary["types"][name] = {
            "requests": len(values),
            "errors": FAILURES[name] if name != "Aggregated" else sum(FAILURES.values()),
            "rps": round(len(values) / seconds, 1) if seconds > 0 else 0.0,
            "p50_ms": _pct(values, 0.50),
            "p95_ms": _pct(values, 0.95),
            "p99_ms": _pct(values, 0.99),
            "statuses": {str(k): v for k, v in sorted(codes.items())},
        }
    with open(STATUS_OUT, "w") as fh:
        json.dump(summary, fh)


class Client(FastHttpUser):
    wait_time = constant(0)

    def _check(self, name: str, method: str, path: str, ok: tuple[int, ...], **kwargs: Any) -> None:
        with self.client.request(method, path, name=name, catch_response=True, **kwargs) as resp:
            if resp.status_code in ok:
                resp.success()
            else:
                resp.failure(f"unexpected {resp.status_code}: {(resp.text or '')[:160]}")

    @task(30)
    def anon_read(self) -> None:
        self._check("anon read", "GET", f"/public/{random.randrange(50)}", (200,))

    @task(45)
    def auth_read(self) -> None:
        token = random.choice(READ_TOKENS)
        self._check(
            "auth read", "GET", f"/items/{random.randrange(20)}", (200,), headers={"Authorization": token}
        )

    @task(12)
    def post_job(self) -> None:
        rid = str(random.randrange(10))
        self._check(
            "POST job",
            "POST",
            f"/jobs/{rid}",
            (200, 429),
            headers={"Authorization": random.choice(JOB_TOKENS)},
            json={"resource_id": rid, "payload": "x" * 64},
        )

    @task(4)
    def post_job_unfunded(self) -> None:
        rid = str(random.randrange(10))
        self._check(
            "POST job unfunded",
            "POST",
            f"/jobs/{rid}",
            (402, 429),  # its limit (5 per 10 s per user and resource) runs before credits
            headers={"Authorization": random.choice(POOR_TOKENS)},
            json={"resource_id": rid},
        )

    @task(4)
    def post_job_hot(self) -> None:
        self._check(
            "POST job hot",
            "POST",
            "/jobs/hot",
            (200, 429),
            headers={"Authorization": HOT_TOKEN},
            json={"resource_id": "hot"},
        )

    @task(5)
    def bad_token(self) -> None:
        self._check("bad token", "GET", "/items/1", (401,), headers={"Authorization": BAD_TOKEN})
