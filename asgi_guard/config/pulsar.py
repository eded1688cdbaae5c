"""Pulsar event-publishing policy (stage 9)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ._base import GuardModel


class PulsarLabelingConfig(GuardModel):
    enabled: bool = False
    mode: Literal["publish", "offload"] = "publish"
    job_topic: str = "persistent://public/default/asgi-guard-jobs"
    dlq_topic: str = "persistent://public/default/asgi-guard-jobs-dlq"
    cluster_name: str = "standalone"
    producer_label: str = "asgi-guard"
    consumer_label: str = "asgi-guard-worker"
    event_label: str = "job.completed"
    max_retries: int = Field(default=3, ge=0)
    retry_delay: float = Field(default=0.2, ge=0)
