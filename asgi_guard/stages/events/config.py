"""Pulsar event-publishing policy (stage 9)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from asgi_guard.core.model import GuardModel


class PulsarLabelingConfig(GuardModel):
    """`publish`: one event per successful (2xx) request, sent in the background.
    `offload`: the request becomes a job on `job_topic` (202 + job id) that `asgi-guard worker` runs."""

    enabled: bool = Field(default=False, description="turn stage 9 on for the route")
    mode: Literal["publish", "offload"] = Field(
        default="publish",
        description='"publish" an event after success, or "offload" the job (202 + job id) to a worker',
    )
    job_topic: str = Field(
        default="persistent://public/default/asgi-guard-jobs", description="topic events and jobs go to"
    )
    dlq_topic: str = Field(
        default="persistent://public/default/asgi-guard-jobs-dlq",
        description="dead-letter topic for jobs that fail `max_retries` times",
    )
    cluster_name: str = Field(default="standalone", description="message property `cluster`")
    producer_label: str = Field(
        default="asgi-guard",
        description="message property and event field `producer` (the Pulsar producer name is the "
        "outbox lane's, so that resends are deduplicated)",
    )
    consumer_label: str = Field(default="asgi-guard-worker", description="the worker's subscription name")
    event_label: str = Field(
        default="job.completed", description="message property `event` and the event's `event` field"
    )
    max_retries: int = Field(default=3, ge=0, description="send retries, and job redeliveries before the DLQ")
    retry_delay: float = Field(default=0.2, ge=0, description="seconds; doubles on each send retry")
    send_timeout: float = Field(default=5.0, gt=0, description="seconds one broker send may take")
    publish_statuses: tuple[int, int] = Field(
        default=(200, 299), description="inclusive range of response statuses that publish an event"
    )
