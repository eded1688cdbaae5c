"""Job functions the worker subprocess runs in the offload tests (results land in $JOBS_OUT)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from asgi_guard.stages.events.worker import Job


def _out() -> Path:
    return Path(os.environ["JOBS_OUT"])


async def store_item(job: Job) -> None:
    """Writes one line per run, so a job that ran twice shows two lines."""
    with open(_out() / f"{job.id}.done", "a") as file:
        file.write(
            json.dumps({"resource_id": job.resource_id, "body": job.json(), "params": job.path_params}) + "\n"
        )


async def always_fails(job: Job) -> None:
    with open(_out() / f"{job.id}.attempts", "a") as file:
        file.write(f"{job.redelivery_count}\n")
    raise RuntimeError("this job always fails")


JOBS = {"store_item": store_item, "always_fails": always_fails}
