"""Two job workers on one topic (Key_Shared): each resource's jobs run in publish order."""

from __future__ import annotations

import asyncio
import random
import uuid

import pulsar
import pytest
from pulsar.asyncio import Client
from pulsar_helpers import QUIET

from asgi_guard.stages.events.config import PulsarLabelingConfig
from asgi_guard.stages.events.envelope import JOB_SCHEMA, dumps
from asgi_guard.stages.events.worker import Job, Worker

pytestmark = pytest.mark.pulsar
# Key_Shared maps each key to a consumer by hash range: with 3 keys, all of them landed on one of
# the two consumers about one run in four (seen in CI); with 12, about one in 2,000.
KEYS = 12
PER_KEY = 8


async def test_two_workers_run_each_keys_jobs_in_order(pulsar_url: str) -> None:
    tag = uuid.uuid4().hex[:10]
    config = PulsarLabelingConfig(
        job_topic=f"persistent://public/default/ks-{tag}",
        dlq_topic=f"persistent://public/default/ks-{tag}-dlq",
        consumer_label=f"ks-{tag}",
        retry_delay=0.1,
    )
    ran: list[tuple[int, str, int]] = []
    rng = random.Random(15)

    def jobs_for(worker: int) -> dict[str, object]:
        async def step(job: Job) -> None:
            await asyncio.sleep(0.03 * (1 - worker) + rng.uniform(0, 0.01))  # worker 0 is slow: would reorder
            ran.append((worker, str(job.resource_id), int(job.json()["seq"])))

        return {"step": step}

    workers = [Worker(jobs_for(n), pulsar_url, config, concurrency=4) for n in range(2)]  # type: ignore[arg-type]
    running = [asyncio.create_task(w.run()) for w in workers]
    client = Client(pulsar_url, logger=QUIET)
    try:
        await asyncio.sleep(2)  # both consumers subscribed before the first message
        producer = await client.create_producer(
            config.job_topic, batching_type=pulsar.BatchingType.KeyBased, batching_max_publish_delay_ms=2
        )
        for seq in range(PER_KEY):
            for key in range(KEYS):
                document = {
                    "schema": JOB_SCHEMA,
                    "job_id": uuid.uuid4().hex,
                    "endpoint": "step",
                    "body": f'{{"seq": {seq}}}',
                    "resource_id": f"r{key}",
                    "path_params": {},
                }
                await producer.send(dumps(document), partition_key=f"r{key}")
        for _ in range(300):
            if len(ran) >= KEYS * PER_KEY:
                break
            await asyncio.sleep(0.1)
    finally:
        for w in workers:
            w.stop()
        await asyncio.wait(running, timeout=30)
        await client.close()
    assert len(ran) == KEYS * PER_KEY, ran
    for key in range(KEYS):
        assert [seq for _, k, seq in ran if k == f"r{key}"] == list(range(PER_KEY)), ran
    assert {w for w, _, _ in ran} == {0, 1}  # both workers took a share
