"""`asgi-guard worker MODULE:JOBS` (wired into asgi_guard/cli.py by `add_parser`)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from asgi_guard.stages.events.config import PulsarLabelingConfig


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    defaults = PulsarLabelingConfig()
    worker = subparsers.add_parser(
        "worker", help="run offloaded jobs: MODULE:JOBS names a mapping of endpoint -> async function"
    )
    worker.add_argument("jobs", metavar="MODULE:JOBS")
    worker.add_argument(
        "--pulsar-url",
        default=os.environ.get("ASGI_GUARD_PULSAR_URL"),
        help="default: $ASGI_GUARD_PULSAR_URL",
    )
    worker.add_argument("--topic", default=defaults.job_topic)
    worker.add_argument("--subscription", default=defaults.consumer_label)
    worker.add_argument("--dlq-topic", default=defaults.dlq_topic)
    worker.add_argument("--max-retries", type=int, default=defaults.max_retries)
    worker.add_argument("--retry-delay", type=float, default=defaults.retry_delay)
    worker.add_argument("--concurrency", type=int, default=4)
    worker.add_argument("--log-level", default="INFO")
    worker.set_defaults(handler=handle_worker)
    return worker  # type: ignore[no-any-return]


def handle_worker(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if not args.pulsar_url:
        print("error: set --pulsar-url or ASGI_GUARD_PULSAR_URL", file=sys.stderr)
        return 2
    from asgi_guard.stages.events.worker import run_worker

    config = PulsarLabelingConfig(
        enabled=True,
        mode="offload",
        job_topic=args.topic,
        consumer_label=args.subscription,
        dlq_topic=args.dlq_topic,
        max_retries=args.max_retries,
        retry_delay=args.retry_delay,
    )
    return run_worker(
        args.jobs,
        args.pulsar_url,
        config,
        concurrency=args.concurrency,
        valkey_url=os.environ.get("ASGI_GUARD_VALKEY_URL"),
        key_prefix=os.environ.get("ASGI_GUARD_KEY_PREFIX", "ag"),
    )
