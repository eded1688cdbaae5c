"""`asgi-guard worker MODULE:JOBS`: run offloaded jobs from `job_topic`.

Consumes with a Key_Shared subscription named `consumer_label`: several workers split the load,
and the broker gives every message key (the resource id the publisher sets as partition key) to one
worker at a time; inside a worker, jobs of one key run one after another, so a resource's jobs run
in publish order. Jobs without a key may run in any order.
A job function is `async def fn(job: Job) -> Any`, looked up by the job's endpoint name. Success
acks; an exception negative-acks (redelivered after `retry_delay`); after `max_retries`
redeliveries Pulsar's dead-letter policy moves the message to `dlq_topic`. Job ids that already ran
are remembered (in Valkey when ASGI_GUARD_VALKEY_URL is set, else in this process), so a
redelivered job that already ran is acked, not run twice.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib
import json
import logging
import os
import signal
import sys
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from asgi_guard.stages.events.config import PulsarLabelingConfig
from asgi_guard.state import ValkeyBackend, backend_from_url, choose

log = logging.getLogger("asgi_guard.worker")
JobFunction = Callable[["Job"], Awaitable[Any]]


@dataclass(frozen=True)
class Job:
    """One offloaded request, as the job function sees it."""

    id: str
    endpoint: str
    body: bytes
    path_params: dict[str, Any] = field(default_factory=dict)
    resource_id: str | None = None
    subject: str | None = None
    request_id: str | None = None
    redelivery_count: int = 0
    document: dict[str, Any] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body) if self.body.strip() else None

    @classmethod
    def from_message(cls, data: bytes, redelivery_count: int = 0) -> Job:
        document = json.loads(data)
        raw = document.get("body") or ""
        body = base64.b64decode(raw) if document.get("body_encoding") == "base64" else raw.encode()
        return cls(
            id=str(document["job_id"]),
            endpoint=str(document["endpoint"]),
            body=body,
            path_params=dict(document.get("path_params") or {}),
            resource_id=document.get("resource_id"),
            subject=document.get("subject"),
            request_id=document.get("request_id"),
            redelivery_count=redelivery_count,
            document=document,
        )


class DoneJobs:
    """Ids of jobs that already ran: a bounded in-process set, or Valkey keys shared by workers."""

    def __init__(
        self,
        valkey_url: str | None = None,
        key_prefix: str = "ag",
        ttl: int = 86_400,
        capacity: int = 100_000,
    ) -> None:
        self._local: OrderedDict[str, None] = OrderedDict()
        self._capacity = capacity
        self._ttl = ttl
        # memory: this process's set alone; Valkey: shared by every worker (one URL rule: asgi_guard.state)
        self._backend: ValkeyBackend | None = choose(
            backend_from_url(valkey_url, key_prefix=key_prefix),
            memory=lambda b: None,
            valkey=lambda b: b,
            concern="the worker's done-job record",
        )

    async def seen(self, job_id: str) -> bool:
        if job_id in self._local:
            return True
        if self._backend is not None:
            key = self._backend.key("jobs", job_id, "done")
            return bool(await self._backend.call(self._backend.client.exists(key)))
        return False

    async def mark(self, job_id: str) -> None:
        self._local[job_id] = None
        while len(self._local) > self._capacity:
            self._local.popitem(last=False)
        if self._backend is not None:
            key = self._backend.key("jobs", job_id, "done")
            await self._backend.call(self._backend.client.set(key, b"1", ex=self._ttl))

    async def close(self) -> None:
        if self._backend is not None:
            await self._backend.close()


def load_jobs(spec: str) -> Mapping[str, JobFunction]:
    """`package.module:NAME` -> the mapping of endpoint name to async job function."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"expected MODULE:JOBS, got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    jobs = getattr(importlib.import_module(module_name), attr)
    if not isinstance(jobs, Mapping):
        raise TypeError(
            f"{spec} is a {type(jobs).__name__}, expected a mapping of endpoint -> async function"
        )
    return jobs


class Worker:
    """Consume jobs until `stop()`; one consumer, up to `concurrency` jobs at a time."""

    def __init__(
        self,
        jobs: Mapping[str, JobFunction],
        service_url: str,
        config: PulsarLabelingConfig | None = None,
        *,
        concurrency: int = 4,
        done: DoneJobs | None = None,
    ) -> None:
        self.jobs = jobs
        self.service_url = service_url
        self.config = config or PulsarLabelingConfig()
        self.concurrency = max(1, concurrency)
        self.done = done or DoneJobs()
        self._stopping = asyncio.Event()
        self._tails: dict[str, asyncio.Task[None]] = {}  # per key: its last job's task
        self.ran = 0

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        import pulsar
        from pulsar.asyncio import Client

        cfg = self.config
        client_log = logging.getLogger("asgi_guard.events.pulsar")
        if client_log.level == logging.NOTSET:
            client_log.setLevel(logging.WARNING)
        client = Client(self.service_url, logger=client_log)
        consumer = await client.subscribe(
            cfg.job_topic,
            cfg.consumer_label,
            consumer_type=pulsar.ConsumerType.KeyShared,
            initial_position=pulsar.InitialPosition.Earliest,
            negative_ack_redelivery_delay_ms=max(100, int(cfg.retry_delay * 1000)),
            dead_letter_policy=pulsar.ConsumerDeadLetterPolicy(
                max_redeliver_count=max(1, cfg.max_retries),
                dead_letter_topic=cfg.dlq_topic,
                initial_subscription_name=f"{cfg.consumer_label}-dlq",
            ),
        )
        log.info("worker consuming %s as %s", cfg.job_topic, cfg.consumer_label)
        slots = asyncio.Semaphore(self.concurrency)
        running: set[asyncio.Task[None]] = set()
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            while not self._stopping.is_set():
                await slots.acquire()
                receiving = asyncio.ensure_future(consumer.receive())
                await asyncio.wait({receiving, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not receiving.done():
                    receiving.cancel()
                    slots.release()
                    break
                try:
                    message = receiving.result()
                except Exception:  # a broken receive is retried, not fatal
                    slots.release()
                    log.exception("receive failed")
                    await asyncio.sleep(0.5)
                    continue
                task = asyncio.create_task(self._in_order(consumer, message))
                running.add(task)
                task.add_done_callback(running.discard)
                task.add_done_callback(lambda _t: slots.release())
            if running:
                await asyncio.wait(running, timeout=30)
        finally:
            stopping.cancel()
            await self.done.close()
            with contextlib.suppress(Exception):
                await consumer.close()
            with contextlib.suppress(Exception):
                await client.close()

    async def _in_order(self, consumer: Any, message: Any) -> None:
        """Run after the previous job of the same key (Key_Shared orders per key across workers,
        `concurrency` would reorder them inside this one)."""
        key = message.partition_key() or ""
        if not key:
            await self._handle(consumer, message)
            return
        before = self._tails.get(key)
        mine = asyncio.current_task()
        assert mine is not None
        self._tails[key] = mine
        try:
            if before is not None and not before.done():
                await asyncio.wait({before})
            await self._handle(consumer, message)
        finally:
            if self._tails.get(key) is mine:
                del self._tails[key]

    async def _handle(self, consumer: Any, message: Any) -> None:
        try:
            job = Job.from_message(message.data(), message.redelivery_count())
        except (ValueError, KeyError, TypeError):
            log.error(
                "malformed job message %s; negative-acking (it will reach the DLQ)", message.message_id()
            )
            await consumer.negative_acknowledge(message)
            return
        try:
            if await self.done.seen(job.id):
                log.info("job %s already ran; acking the redelivery", job.id)
                await consumer.acknowledge(message)
                return
            function = self.jobs.get(job.endpoint)
            if function is None:
                raise LookupError(f"no job function registered for endpoint {job.endpoint!r}")
            await function(job)
            await self.done.mark(job.id)
            self.ran += 1
        except Exception:  # a failing job is negative-acked, the worker keeps going
            log.exception("job %s (%s) failed (redelivery %d)", job.id, job.endpoint, job.redelivery_count)
            await consumer.negative_acknowledge(message)
            return
        await consumer.acknowledge(message)


def run_worker(
    spec: str,
    service_url: str,
    config: PulsarLabelingConfig,
    concurrency: int = 4,
    valkey_url: str | None = None,
    key_prefix: str = "ag",
) -> int:
    """Blocking entry point for the CLI: run until SIGINT/SIGTERM."""
    jobs = load_jobs(spec)

    async def main() -> None:
        worker = Worker(
            jobs, service_url, config, concurrency=concurrency, done=DoneJobs(valkey_url, key_prefix)
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, worker.stop)
        await worker.run()

    asyncio.run(main())
    return 0
