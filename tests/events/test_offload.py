"""`offload` mode end to end: 202 + job id, a real `asgi-guard worker` process runs the job."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pulsar.asyncio import Client
from pulsar_helpers import QUIET, Handled, body, make_app, receive_all, subscribe

from asgi_guard.stages.events.envelope import JOB_SCHEMA, dumps

pytestmark = pytest.mark.pulsar
HERE = Path(__file__).parent
MAX_RETRIES = 2


@pytest.fixture(scope="module")
def worker_topics() -> dict[str, str]:
    tag = uuid.uuid4().hex[:10]
    return {
        "topic": f"persistent://public/default/jobs-{tag}",
        "dlq": f"persistent://public/default/jobs-{tag}-dlq",
        "subscription": f"workers-{tag}",
    }


@pytest.fixture(scope="module")
def worker(
    pulsar_url: str, worker_topics: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """`asgi-guard worker pulsar_jobs:JOBS` in its own process; yields the directory jobs write to."""
    out = tmp_path_factory.mktemp("jobs")
    env = {
        **os.environ,
        "JOBS_OUT": str(out),
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    log = open(out / "worker.log", "wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "asgi_guard.cli",
            "worker",
            "pulsar_jobs:JOBS",
            "--pulsar-url",
            pulsar_url,
            "--topic",
            worker_topics["topic"],
            "--subscription",
            worker_topics["subscription"],
            "--dlq-topic",
            worker_topics["dlq"],
            "--max-retries",
            str(MAX_RETRIES),
            "--retry-delay",
            "0.1",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    yield out
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
    log.close()


async def wait_for_file(path: Path, timeout: float = 60.0) -> str:
    for _ in range(int(timeout / 0.1)):
        if path.exists() and path.read_text().endswith("\n"):
            return path.read_text()
        await asyncio.sleep(0.1)
    raise AssertionError(f"{path} never appeared")


async def test_offload_answers_202_and_the_worker_runs_the_job(
    pulsar_url: str, worker: Path, worker_topics: dict[str, str], tmp_path: Path, make_client
) -> None:
    guard = make_app(
        tmp_path / "outbox.db",
        pulsar_url,
        worker_topics["topic"],
        mode="offload",
        consumer_label=worker_topics["subscription"],
        dlq_topic=worker_topics["dlq"],
    )
    before = Handled.calls
    try:
        response = await make_client(guard).post("/items/9", json={"colour": "blue"})
        assert response.status_code == 202
        job_id = response.json()["job_id"]
        assert response.headers["x-job-id"] == job_id
        assert Handled.calls == before  # the handler never ran in-process
        result = await wait_for_file(worker / f"{job_id}.done")
    finally:
        await guard.runtime.shutdown()
    assert [json.loads(line) for line in result.splitlines()] == [
        {"resource_id": "9", "body": {"colour": "blue"}, "params": {"resource_id": "9"}}
    ]


async def test_a_redelivered_job_that_already_ran_is_not_run_twice(
    pulsar_url: str, worker: Path, worker_topics: dict[str, str]
) -> None:
    job_id = uuid.uuid4().hex
    document = {
        "schema": JOB_SCHEMA,
        "job_id": job_id,
        "endpoint": "store_item",
        "body": "{}",
        "resource_id": "dup",
        "path_params": {},
    }
    client = Client(pulsar_url, logger=QUIET)
    producer = await client.create_producer(worker_topics["topic"])
    try:
        await producer.send(dumps(document), properties={"job_id": job_id})
        await wait_for_file(worker / f"{job_id}.done")
        await producer.send(dumps(document), properties={"job_id": job_id})
        marker = uuid.uuid4().hex  # a later job: once it ran, the duplicate was handled too
        await producer.send(dumps({**document, "job_id": marker}))
        await wait_for_file(worker / f"{marker}.done")
    finally:
        await client.close()
    assert len((worker / f"{job_id}.done").read_text().splitlines()) == 1


async def test_a_job_that_always_fails_lands_in_the_dlq(
    pulsar_url: str, worker: Path, worker_topics: dict[str, str]
) -> None:
    client, dlq = await subscribe(pulsar_url, worker_topics["dlq"], "dlq-reader")
    job_id = uuid.uuid4().hex
    document = {
        "schema": JOB_SCHEMA,
        "job_id": job_id,
        "endpoint": "always_fails",
        "body": "",
        "resource_id": "bad",
        "path_params": {},
    }
    producer = await client.create_producer(worker_topics["topic"])
    try:
        await producer.send(dumps(document), properties={"job_id": job_id}, partition_key="bad")
        [dead] = await receive_all(dlq, 1, timeout=60)
    finally:
        await client.close()
    assert body(dead)["job_id"] == job_id
    attempts = (worker / f"{job_id}.attempts").read_text().split()
    assert attempts == [str(i) for i in range(len(attempts))]
    assert len(attempts) == MAX_RETRIES + 1


async def test_offloaded_body_is_encrypted_like_the_handler_would_see_it(
    pulsar_url: str, topic: str, tmp_path: Path, make_client
) -> None:
    """Encryption (stage 10) is inside offload: the job carries ciphertext, never the plaintext."""
    from pydantic import SecretStr
    from starlette.applications import Starlette
    from starlette.routing import Route

    from asgi_guard import GuardMiddleware, GuardSettings, JobConfig, RouteRegistry
    from asgi_guard.config import EncryptionConfig, PulsarLabelingConfig
    from asgi_guard.stages.encryption.crypto import generate_key

    registry = RouteRegistry()
    registry.register(
        "/cards/{resource_id}",
        JobConfig(
            endpoint_name="store_card",
            encryption=EncryptionConfig(enable_encryption=True, fields=["number"]),
            pulsar_labeling=PulsarLabelingConfig(enabled=True, mode="offload", job_topic=topic),
        ),
        methods=["POST"],
    )
    settings = GuardSettings(
        _env_file=None,
        pulsar_url=pulsar_url,
        metrics_path="",
        encryption_keys={"k1": SecretStr(generate_key())},
        outbox_path=str(tmp_path / "outbox.db"),
    )

    async def never(request: object) -> None:
        raise AssertionError("an offloaded job never reaches the handler")

    guard = GuardMiddleware(
        Starlette(routes=[Route("/cards/{resource_id}", never, methods=["POST"])]),
        registry=registry,
        settings=settings,
    )
    client, consumer = await subscribe(pulsar_url, topic)
    try:
        response = await make_client(guard).post(
            "/cards/c1", json={"number": "4111111111111111", "name": "A"}
        )
        assert response.status_code == 202
        [message] = await receive_all(consumer, 1)
    finally:
        await guard.runtime.shutdown()
        await client.close()
    job = json.loads(body(message)["body"])
    assert job["name"] == "A"
    assert job["number"].startswith("v1.") and "4111111111111111" not in message.data().decode()
