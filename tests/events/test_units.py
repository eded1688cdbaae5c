"""Pieces that need no broker: job decoding, the shared done-job ledger, the service helper's errors."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import pytest

from asgi_guard.stages.events.envelope import JOB_SCHEMA, dumps
from asgi_guard.stages.events.worker import DoneJobs, Job, load_jobs
from asgi_guard_dev import pulsar as service


def test_job_decodes_text_and_binary_bodies() -> None:
    document = {
        "schema": JOB_SCHEMA,
        "job_id": "j1",
        "endpoint": "e",
        "body": '{"a": 1}',
        "body_encoding": "utf-8",
        "path_params": {"resource_id": "3"},
        "resource_id": "3",
    }
    job = Job.from_message(dumps(document), 2)
    assert (job.id, job.endpoint, job.json(), job.resource_id, job.redelivery_count) == (
        "j1",
        "e",
        {"a": 1},
        "3",
        2,
    )
    raw = bytes(range(256))
    binary = Job.from_message(
        dumps({**document, "body": base64.b64encode(raw).decode(), "body_encoding": "base64"})
    )
    assert binary.body == raw


def test_malformed_job_is_a_value_error() -> None:
    with pytest.raises((ValueError, KeyError)):
        Job.from_message(b"not json")
    with pytest.raises(KeyError):
        Job.from_message(b'{"endpoint": "x"}')


def test_load_jobs_needs_module_and_mapping() -> None:
    with pytest.raises(ValueError):
        load_jobs("no_colon_here")
    with pytest.raises(TypeError):
        load_jobs("os:getcwd")


async def test_done_jobs_in_process() -> None:
    done = DoneJobs(capacity=2)
    await done.mark("a")
    assert await done.seen("a") and not await done.seen("b")
    await done.mark("b")
    await done.mark("c")
    assert not await done.seen("a")  # bounded: the oldest id is forgotten


async def test_done_jobs_shared_through_valkey(valkey_url: str, key_prefix: str) -> None:
    job_id = uuid.uuid4().hex
    first, second = DoneJobs(valkey_url, key_prefix), DoneJobs(valkey_url, key_prefix)
    try:
        assert not await second.seen(job_id)
        await first.mark(job_id)
        assert await second.seen(job_id)  # another worker process sees it too
    finally:
        await first.close()
        await second.close()


def test_fetch_without_maven_or_cache_is_unavailable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ASGI_GUARD_CACHE", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(service.PulsarUnavailable, match="Maven"):
        service.fetch("0.0.0-missing")


def test_no_java_is_unavailable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(service.PulsarUnavailable, match="Java"):
        service.require_java()
