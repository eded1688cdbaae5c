"""`asgi-guard worker MODULE:JOBS`: run offloaded jobs from Pulsar (asgi_guard.stages.events.worker)."""

from __future__ import annotations

import argparse
import os
from typing import Annotated

import typer


def worker(
    jobs: Annotated[
        str, typer.Argument(metavar="MODULE:JOBS", help="a mapping of endpoint name -> async function")
    ],
    pulsar_url: Annotated[
        str | None, typer.Option("--pulsar-url", help="default: $ASGI_GUARD_PULSAR_URL", show_default=False)
    ] = None,
    topic: Annotated[str | None, typer.Option("--topic", help="job topic")] = None,
    subscription: Annotated[str | None, typer.Option("--subscription")] = None,
    dlq_topic: Annotated[str | None, typer.Option("--dlq-topic")] = None,
    max_retries: Annotated[int | None, typer.Option("--max-retries")] = None,
    retry_delay: Annotated[float | None, typer.Option("--retry-delay", help="seconds")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency")] = 4,
    log_level: Annotated[str, typer.Option("--log-level")] = "INFO",
) -> None:
    """Run offloaded jobs (PulsarLabelingConfig defaults for topics, retries and the DLQ)."""
    from asgi_guard.stages.events.cli import handle_worker
    from asgi_guard.stages.events.config import PulsarLabelingConfig

    defaults = PulsarLabelingConfig()
    args = argparse.Namespace(
        jobs=jobs,
        pulsar_url=pulsar_url or os.environ.get("ASGI_GUARD_PULSAR_URL"),
        topic=topic or defaults.job_topic,
        subscription=subscription or defaults.consumer_label,
        dlq_topic=dlq_topic or defaults.dlq_topic,
        max_retries=defaults.max_retries if max_retries is None else max_retries,
        retry_delay=defaults.retry_delay if retry_delay is None else retry_delay,
        concurrency=concurrency,
        log_level=log_level,
    )
    raise typer.Exit(handle_worker(args))
