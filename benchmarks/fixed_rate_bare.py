"""fixed_rate.py's baseline: the demo's `GET /jobs/{resource_id}` handler on bare FastAPI (no guard).

The body is the demo handler's, minus what the guard provides (the viewer comes from the token the
guard verified; here there is none)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI

STORE: dict[str, dict[str, Any]] = {}

app = FastAPI(title="bare FastAPI baseline")


@app.get("/jobs/{resource_id}")
async def job_status(resource_id: str) -> dict[str, Any]:
    job = STORE.get(resource_id)
    return {"resource_id": resource_id, "known": job is not None, "viewer": None, "generated_at": time.time()}
