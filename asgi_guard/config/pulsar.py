"""Pulsar event-publishing policy (stage 9)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ._base import GuardModel


class PulsarLabelingConfig(GuardModel):
    """`publish`: one event per successful (2xx) request, sent in the background.
    `offload`: the request becomes a job on `job_topic` (202 + job id) that `asgi-guard worker` runs."""

    enabled: bool = False
    mode: Literal["publish", "offload"] = "publish"
    job_topic: str = "persistent://public/default/asgi-guard-jobs"
    dlq_topic: str = "persistent://public/default/asgi-guard-jobs-dlq"
    cluster_name: str = "standalone"
    producer_label: str = "asgi-guard"
    consumer_label: str = "asgi-guard-worker"
    event_label: str = "job.completed"
    max_retries: int = Field(default=3, ge=0, description="send retries, and job redeliveries before the DLQ")
    retry_delay: float = Field(default=0.2, ge=0, description="seconds; doubles on each send retry")
    send_timeout: float = Field(default=5.0, gt=0, description="seconds one broker send may take")
    publish_statuses: tuple[int, int] = Field(
        default=(200, 299), description="inclusive range of response statuses that publish an event"
    )
