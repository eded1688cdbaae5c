"""The chaos run's server: the example app (examples/fastapi_app.py) plus one route that can fail.

Served by `uvicorn chaos_app:app --workers 2` (app dir tests/chaos). The example's own routes stay as
they are (POST /jobs/{id}: JWT+MFA, token bucket, credits, breaker, encryption, events; GET /jobs/{id}:
cached). The example cannot fail on demand, so this module adds `POST /chaos/{resource_id}` with
credits, a token bucket, a breaker, idempotency, `handler_timeout`, events and a handler whose body
field `mode` picks what it does: ok, fail (its own 500), raise (an exception), slow (past the time-out),
bg (a background task that outlives the response), linger (slow enough for a client to hang up).

The journal (`CHAOS_JOURNAL_DIR`, one JSONL file per worker process) is the server-side ground truth
the harness reconciles against: every credit reserve/commit/refund with its outcome (recorded by
wrapping the credit store's public methods) and every handler start, finish and background-task end.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.background import BackgroundTask

from asgi_guard import JobConfig
from asgi_guard.config import (
    CircuitBreakerConfig,
    PulsarLabelingConfig,
    RateLimitAlgo,
    RateLimitConfig,
    SecurityConfig,
    TokenBucketConfig,
)
from asgi_guard.stages.credits.valkey import ValkeyCreditStore
from asgi_guard.stages.idempotency.config import IdempotencyConfig

ROOT = Path(__file__).resolve().parents[2]
CHAOS_TOPIC = "persistent://public/default/chaos-jobs"
HANDLER_TIMEOUT = 0.5
CHAOS_BUCKET = TokenBucketConfig(rate_limit=4, refill_rate=1.0, rate_window=60)

# -- the journal ------------------------------------------------------------------------------------
_journal_dir = os.environ.get("CHAOS_JOURNAL_DIR")
_fd: int | None = None


def journal(**record: Any) -> None:
    """Append one JSON line (O_APPEND, one write: lines of one process never interleave)."""
    global _fd
    if _journal_dir is None:
        return
    if _fd is None:
        path = Path(_journal_dir) / f"journal-{os.getpid()}.jsonl"
        _fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    record["t"] = time.time()
    record["pid"] = os.getpid()
    os.write(_fd, (json.dumps(record, separators=(",", ":")) + "\n").encode())


def _wrap_store() -> None:
    """Record every reserve/commit/refund the credits stage makes, with its outcome or error."""
    for op in ("reserve", "commit", "refund"):
        original = getattr(ValkeyCreditStore, op)
        if getattr(original, "_chaos", False):
            continue

        def make(op: str, original: Any) -> Any:
            signature = inspect.signature(original)

            async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
                bound = signature.bind(self, *args, **kwargs).arguments
                user, rid = bound["user"], bound["reservation_id"]
                try:
                    result = await original(self, *args, **kwargs)
                except BaseException as exc:
                    journal(op=op, user=user, rid=rid, error=type(exc).__name__)
                    raise
                if op == "reserve":
                    journal(op=op, user=user, rid=rid, status=int(result.status), balance=result.balance)
                else:
                    journal(op=op, user=user, rid=rid, done=result.done, balance=result.balance)
                return result

            wrapper._chaos = True  # type: ignore[attr-defined]
            return wrapper

        setattr(ValkeyCreditStore, op, make(op, original))


_wrap_store()

# -- the example, loaded from its file ---------------------------------------------------------------
_spec = importlib.util.spec_from_file_location("fastapi_app_example", ROOT / "examples" / "fastapi_app.py")
assert _spec is not None and _spec.loader is not None
example = importlib.util.module_from_spec(_spec)
sys.modules["fastapi_app_example"] = example
_spec.loader.exec_module(example)
app = example.app

CHAOS_JOB = JobConfig(
    endpoint_name="chaos_job",
    required_credits=1,
    handler_timeout=HANDLER_TIMEOUT,
    rate_limit=RateLimitConfig(enabled=True, algo=RateLimitAlgo.token_bucket, token_bucket=CHAOS_BUCKET),
    circuit_breaker=CircuitBreakerConfig(
        enabled=True, circuit_breaker_threshold=8, circuit_breaker_timeout=2
    ),
    security=SecurityConfig(auth_type_required="jwt", user_permissions_required=["jobs:write"]),
    idempotency=IdempotencyConfig(enabled=True, ttl=600),
    pulsar_labeling=PulsarLabelingConfig(
        enabled=True, job_topic=CHAOS_TOPIC, event_label="chaos_job.completed", send_timeout=2.0
    ),
)
example.registry.register("/chaos/{resource_id}", CHAOS_JOB, methods=["POST"])


@app.post("/chaos/{resource_id}")
async def chaos_job(resource_id: str, request: Request) -> Any:
    """Business logic on demand: `mode` says how this call ends."""
    rid = request.headers.get("x-request-id", "")
    body = await request.json()
    mode = body.get("mode", "ok") if isinstance(body, dict) else "ok"
    journal(op="handler_start", rid=rid, mode=mode)
    if mode == "fail":
        journal(op="handler_end", rid=rid, status=500)
        return JSONResponse({"error": "deliberate failure"}, status_code=500)
    if mode == "raise":
        journal(op="handler_end", rid=rid, status="raise")
        raise RuntimeError("deliberate handler exception")
    if mode == "slow":
        await asyncio.sleep(HANDLER_TIMEOUT * 3)
    elif mode == "linger":
        await asyncio.sleep(0.4)
    background = None
    if mode == "bg":

        async def after() -> None:
            await asyncio.sleep(HANDLER_TIMEOUT * 1.5)  # outlives the time-out: must not be cancelled
            journal(op="bg_done", rid=rid)

        background = BackgroundTask(after)
    journal(op="handler_end", rid=rid, status=200)
    return JSONResponse({"resource_id": resource_id, "mode": mode}, background=background)


async def _mark_started() -> None:
    """Tell the harness this worker finished start-up (uvicorn logs only warnings here)."""
    if _journal_dir is not None:
        Path(_journal_dir, f"started-{os.getpid()}").touch()


example.runtime.on_startup(_mark_started)
