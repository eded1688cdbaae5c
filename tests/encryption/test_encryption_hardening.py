"""Hardening (issue 13, cases 3 and 8): the encryption stage neither lets a client trip the shared
breaker with input it cannot process, nor lets through a value the app's own model would refuse."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, SecretStr

from asgi_guard import GuardRuntime, GuardSettings, JobConfig, RouteRegistry, install
from asgi_guard.config import CircuitBreakerConfig, EncryptionConfig
from asgi_guard.stages.credits import Anonymous, credit_store
from asgi_guard.stages.encryption.crypto import generate_key

KEY = generate_key()
USER = "127.0.0.1"
PAYER = Anonymous(USER)  # an anonymous client\'s balance is addressed by its address


class Card(BaseModel):
    number: str  # an encrypted field arrives as an envelope string, so the app declares str


class Payload(BaseModel):
    resource_id: str
    secret_value: str
    cards: list[Card] | None = None


def _app() -> tuple[FastAPI, GuardRuntime, list[Payload]]:
    seen: list[Payload] = []
    api = FastAPI()

    @api.post("/jobs/{resource_id}")
    async def job(resource_id: str, payload: Payload) -> dict[str, Any]:
        seen.append(payload)
        return {"ok": True}

    registry = RouteRegistry()
    config = JobConfig(
        endpoint_name="jobs",
        required_credits=1,
        circuit_breaker=CircuitBreakerConfig(enabled=True, circuit_breaker_threshold=2),
        encryption=EncryptionConfig(enable_encryption=True, fields=["secret_value", "cards.number"]),
    )
    registry.register("/jobs/{resource_id}", config, methods=["POST"])
    settings = GuardSettings(_env_file=None, encryption_keys={"k": SecretStr(KEY)}, metrics_path="")  # type: ignore[call-arg]
    runtime = GuardRuntime(settings)
    install(api, registry, runtime=runtime)
    return api, runtime, seen


async def test_lone_surrogates_are_a_4xx_that_neither_charges_nor_trips_the_breaker(make_client: Any) -> None:
    api, runtime, seen = _app()
    await credit_store(runtime.backend).set(PAYER, 10)
    client = make_client(api)
    for i in range(6):
        body = f'{{"resource_id":"{i}","secret_value":"\\ud800"}}'
        response = await client.post(f"/jobs/{i}", content=body, headers={"content-type": "application/json"})
        assert 400 <= response.status_code < 500, response.text
        assert response.headers["content-type"] == "application/problem+json"
    ok = await client.post("/jobs/9", json={"resource_id": "9", "secret_value": "fine"})
    assert ok.status_code == 200, "the breaker stays closed for everyone"
    assert await credit_store(runtime.backend).balance(PAYER) == 9
    assert len(seen) == 1


async def test_surrogate_in_a_field_that_is_not_encrypted_is_also_a_4xx(make_client: Any) -> None:
    api, runtime, _ = _app()
    await credit_store(runtime.backend).set(PAYER, 10)
    body = '{"resource_id":"\\udfff","secret_value":"x"}'
    response = await make_client(api).post(
        "/jobs/1", content=body, headers={"content-type": "application/json"}
    )
    assert 400 <= response.status_code < 500


async def test_a_value_the_model_refuses_is_a_422_without_a_charge(make_client: Any) -> None:
    api, runtime, seen = _app()
    await credit_store(runtime.backend).set(PAYER, 10)
    client = make_client(api)
    bad: list[dict[str, Any]] = [
        {"resource_id": "x", "secret_value": {}},
        {"resource_id": "x", "secret_value": ["a"]},
        {"resource_id": "x", "secret_value": 5},
        {"resource_id": "x", "secret_value": True},
        {"resource_id": "x", "secret_value": None},
        {"resource_id": "x", "secret_value": "ok", "cards": [{"number": "1"}, {"number": 4111}]},
    ]
    for document in bad:
        response = await client.post("/jobs/x", json=document)
        assert response.status_code == 422, (document, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["errors"][0]["loc"][0] == "body"
    assert seen == []
    assert await credit_store(runtime.backend).balance(PAYER) == 10
    good = await client.post(
        "/jobs/x", json={"resource_id": "x", "secret_value": "s", "cards": [{"number": "1"}]}
    )
    assert good.status_code == 200, good.text
    assert seen[0].secret_value.startswith("v1.")
    assert seen[0].cards is not None and seen[0].cards[0].number.startswith("v1.")


async def test_malformed_json_has_one_documented_status(make_client: Any) -> None:
    api, runtime, _seen = _app()
    await credit_store(runtime.backend).set(PAYER, 10)
    response = await make_client(api).post(
        "/jobs/x", content=b'{"secret_value": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["type"] == "urn:asgi-guard:problem:malformed-json"
    assert await credit_store(runtime.backend).balance(PAYER) == 10
