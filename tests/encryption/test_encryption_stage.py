"""Stage 10 end to end on a Starlette app: the handler stores ciphertext, the caller reads plaintext."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from asgi_guard import GuardMiddleware, GuardSettings, JobConfig, RouteRegistry, install
from asgi_guard.config import EncryptionConfig
from asgi_guard.core.errors import ConfigError
from asgi_guard.stages.encryption.crypto import generate_key

KEY_OLD, KEY_NEW = generate_key(), generate_key()
SECRETS = EncryptionConfig(
    enable_encryption=True,
    enable_decryption=True,
    fields=["secret", "card.number", "items.pin"],
    aad_context="secrets",
)


class Store:
    """What the handler persisted, exactly as it received it."""

    def __init__(self) -> None:
        self.rows: dict[str, Any] = {}

    def app(self) -> Starlette:
        async def write(request: Request) -> JSONResponse:
            self.rows[request.path_params["id"]] = await request.json()
            return JSONResponse(self.rows[request.path_params["id"]], status_code=201)

        async def read(request: Request) -> JSONResponse:
            return JSONResponse(self.rows[request.path_params["id"]])

        async def read_raw(request: Request) -> Response:
            return Response(json.dumps(self.rows[request.path_params["id"]]), media_type="application/json")

        async def text(request: Request) -> PlainTextResponse:
            return PlainTextResponse(self.rows[request.path_params["id"]]["secret"])

        async def stream(request: Request) -> StreamingResponse:
            row = json.dumps(self.rows[request.path_params["id"]]).encode()

            async def chunks() -> Any:
                yield row

            return StreamingResponse(chunks(), media_type="application/json")

        return Starlette(
            routes=[
                Route("/secrets/{id}", write, methods=["POST"]),
                Route("/secrets/{id}", read, methods=["GET"]),
                Route("/raw/{id}", read_raw, methods=["GET"]),
                Route("/text/{id}", text, methods=["GET"]),
                Route("/stream/{id}", stream, methods=["GET"]),
                Route("/echo/{id}", write, methods=["POST"]),
                Route("/other/{id}", read, methods=["GET"]),
            ]
        )


def registry(encryption: EncryptionConfig = SECRETS) -> RouteRegistry:
    reg = RouteRegistry()
    reg.register("/secrets/{id}", JobConfig(encryption=encryption), methods=["POST", "GET"])
    reg.register("/raw/{id}", JobConfig(encryption=encryption), methods=["GET"])
    reg.register("/text/{id}", JobConfig(encryption=encryption), methods=["GET"])
    reg.register("/stream/{id}", JobConfig(encryption=encryption), methods=["GET"])
    only_in = encryption.model_copy(update={"enable_decryption": False})
    reg.register("/echo/{id}", JobConfig(encryption=only_in), methods=["POST"])
    other = encryption.model_copy(update={"aad_context": None})  # bound to its own template
    reg.register("/other/{id}", JobConfig(encryption=other), methods=["GET"])
    return reg


def settings(keys: dict[str, str] | None = None, primary: str | None = None) -> GuardSettings:
    keys = {"old": KEY_OLD} if keys is None else keys
    return GuardSettings(
        _env_file=None,
        encryption_keys={k: SecretStr(v) for k, v in keys.items()},
        encryption_primary_key=primary,
        metrics_path="",
    )


def guarded(store: Store, guard_settings: GuardSettings, reg: RouteRegistry | None = None) -> GuardMiddleware:
    return GuardMiddleware(store.app(), registry=reg or registry(), settings=guard_settings)


def assert_problem(response: httpx.Response, reason: str, field: str) -> None:
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == "urn:asgi-guard:problem:encrypted-field-invalid"
    assert (body["reason"], body["field"]) == (reason, field)
    assert body["request_id"] == response.headers["x-request-id"]


def envelope_kid(value: Any) -> str:
    assert isinstance(value, str) and value.startswith("v1.")
    return value.split(".")[1]


DOCUMENT = {
    "name": "alice",
    "secret": "s3cr3t-\u00e9\u00e8",
    "card": {"number": 4111111111111111, "brand": "visa"},
    "items": [{"pin": {"a": [1, 2.5, None, True]}}, {"pin": None}, {"nopin": 1}],
}


async def test_round_trip_handler_sees_only_ciphertext(make_client: Any) -> None:
    store = Store()
    client = make_client(guarded(store, settings()))
    written = await client.post("/secrets/1", json=DOCUMENT)
    assert written.status_code == 201
    assert written.json() == DOCUMENT  # the caller reads back plaintext
    assert written.headers["content-length"] == str(len(written.content))

    stored = store.rows["1"]  # what the handler received and kept
    assert (
        stored["name"] == "alice" and stored["card"]["brand"] == "visa" and stored["items"][2] == {"nopin": 1}
    )
    sealed = [
        stored["secret"],
        stored["card"]["number"],
        stored["items"][0]["pin"],
        stored["items"][1]["pin"],
    ]
    assert all(envelope_kid(value) == "old" for value in sealed)
    assert "s3cr3t" not in json.dumps(stored) and "4111" not in json.dumps(stored)

    read = await client.get("/secrets/1")
    assert read.status_code == 200 and read.json() == DOCUMENT
    raw = await client.get("/raw/1")  # a handler-built JSON body with its own Content-Length
    assert raw.json() == DOCUMENT and raw.headers["content-length"] == str(len(raw.content))


async def test_encrypt_only_route_returns_what_the_handler_received(make_client: Any) -> None:
    store = Store()
    client = make_client(guarded(store, settings()))
    response = await client.post("/echo/1", json={"secret": 7, "card": {"number": "x"}, "plain": "p"})
    body = response.json()
    assert body == store.rows["1"]
    assert envelope_kid(body["secret"]) == "old" and envelope_kid(body["card"]["number"]) == "old"
    assert body["plain"] == "p"


async def test_values_of_every_json_type_round_trip(make_client: Any) -> None:
    store = Store()
    client = make_client(guarded(store, settings()))
    values: list[Any] = [
        0,
        -3,
        1.5e300,
        "",
        "x",
        True,
        False,
        None,
        [],
        {},
        [1, "a", {"b": None}],
        {"nested": {"k": [1]}},
    ]
    for i, value in enumerate(values):
        await client.post(f"/secrets/{i}", json={"secret": value})
        assert envelope_kid(store.rows[str(i)]["secret"]) == "old"
        read = await client.get(f"/secrets/{i}")
        assert read.json() == {"secret": value}
        assert type(read.json()["secret"]) is type(value)


async def test_rotation(make_client: Any) -> None:
    store = Store()
    before = make_client(guarded(store, settings({"old": KEY_OLD})))
    await before.post("/secrets/1", json={"secret": "written before rotation"})
    assert envelope_kid(store.rows["1"]["secret"]) == "old"

    rotated = make_client(guarded(store, settings({"old": KEY_OLD, "new": KEY_NEW}, primary="new")))
    assert (await rotated.get("/secrets/1")).json() == {"secret": "written before rotation"}
    await rotated.post("/secrets/2", json={"secret": "written after"})
    assert envelope_kid(store.rows["2"]["secret"]) == "new"
    assert (await rotated.get("/secrets/2")).json() == {"secret": "written after"}

    # "the first" is the default primary: list the new key first
    first = make_client(guarded(store, settings({"new": KEY_NEW, "old": KEY_OLD})))
    await first.post("/secrets/3", json={"secret": 3})
    assert envelope_kid(store.rows["3"]["secret"]) == "new"

    # once the old key is retired, its values are an unknown key id: 400, never 500
    retired = make_client(guarded(store, settings({"new": KEY_NEW})))
    assert (await retired.get("/secrets/2")).json() == {"secret": "written after"}
    assert_problem(await retired.get("/secrets/1"), "unknown-key", "secret")


async def test_tampered_value_is_a_400(make_client: Any) -> None:
    store = Store()
    client = make_client(guarded(store, settings()))
    await client.post("/secrets/1", json={"secret": "abc", "card": {"number": 1}})
    value = store.rows["1"]["secret"]
    store.rows["1"]["secret"] = value[:-2] + ("AA" if not value.endswith("AA") else "BB")
    assert_problem(await client.get("/secrets/1"), "tampered", "secret")
    store.rows["1"]["secret"] = "v1.old.!!!.???"
    assert_problem(await client.get("/secrets/1"), "malformed", "secret")


async def test_ciphertext_moved_to_another_field_or_route_fails(make_client: Any) -> None:
    store = Store()
    client = make_client(guarded(store, settings()))
    await client.post("/secrets/1", json={"secret": "mine", "card": {"number": 1}})
    row = store.rows["1"]
    store.rows["2"] = {"secret": row["card"]["number"]}  # card.number's ciphertext into `secret`
    assert_problem(await client.get("/secrets/2"), "tampered", "secret")
    store.rows["3"] = {"card": {"number": row["secret"]}}
    assert_problem(await client.get("/secrets/3"), "tampered", "card.number")
    # same field name, another route (no shared aad_context): also refused
    assert_problem(await client.get("/other/1"), "tampered", "secret")


async def test_plaintext_where_ciphertext_belongs(make_client: Any) -> None:
    store = Store()
    store.rows["1"] = {"secret": "never encrypted"}
    store.rows["2"] = {"secret": 12}
    client = make_client(guarded(store, settings()))
    assert_problem(await client.get("/secrets/1"), "not-ciphertext", "secret")
    assert_problem(await client.get("/secrets/2"), "not-ciphertext", "secret")

    lenient = SECRETS.model_copy(update={"allow_plaintext": True})
    migrating = make_client(guarded(store, settings(), registry(lenient)))
    assert (await migrating.get("/secrets/1")).json() == {"secret": "never encrypted"}
    store.rows["3"] = {"secret": "v1.old.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA"}
    assert_problem(await migrating.get("/secrets/3"), "tampered", "secret")


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"secret=abc", "application/x-www-form-urlencoded"),
        (b'{"secret": "abc"', "application/json"),
        (b"\xff\xfe", "application/json"),
        (b"[" * 5000 + b"]" * 5000, "application/json"),
    ],
)
async def test_non_json_body_on_an_encrypting_route_is_a_400(
    make_client: Any, content: bytes, content_type: str
) -> None:
    store = Store()
    client = make_client(guarded(store, settings()))
    response = await client.post("/secrets/1", content=content, headers={"content-type": content_type})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert store.rows == {}


async def test_json_without_json_content_type_is_still_encrypted(make_client: Any) -> None:
    store = Store()
    client = make_client(guarded(store, settings()))
    await client.post("/echo/1", content=b'{"secret": "abc"}', headers={"content-type": "text/plain"})
    assert envelope_kid(store.rows["1"]["secret"]) == "old"


async def test_non_finite_numbers_are_a_400(make_client: Any) -> None:
    store = Store()
    client = make_client(guarded(store, settings()))
    for body in (b'{"secret": NaN}', b'{"secret": -Infinity}', b'{"secret": 1e99999}'):
        response = await client.post("/secrets/1", content=body)
        # not JSON (RFC 8259 section 6): refused when the guard parses the body, like any broken JSON
        assert response.status_code == 400, body
        assert response.json()["type"] == "urn:asgi-guard:problem:malformed-json", body
    assert store.rows == {}


async def test_non_json_and_streaming_responses_pass_through(make_client: Any) -> None:
    store = Store()
    client = make_client(guarded(store, settings()))
    await client.post("/secrets/1", json={"secret": "abc"})
    ciphertext = store.rows["1"]["secret"]
    assert (await client.get("/text/1")).text == ciphertext
    streamed = await client.get("/stream/1")
    assert streamed.json() == {"secret": ciphertext}


async def test_bodies_without_the_fields_are_untouched(make_client: Any) -> None:
    store = Store()
    client = make_client(guarded(store, settings()))
    for i, document in enumerate([{"other": 1}, [1, 2], "text", 5, None]):
        response = await client.post(f"/secrets/{i}", content=json.dumps(document))
        assert response.status_code == 201
        assert store.rows[str(i)] == document and response.json() == document


async def test_top_level_array_of_records(make_client: Any) -> None:
    store = Store()
    client = make_client(guarded(store, settings()))
    records = [{"secret": i} for i in range(3)]
    assert (await client.post("/secrets/1", json=records)).json() == records
    assert all(envelope_kid(row["secret"]) == "old" for row in store.rows["1"])


async def test_no_keys_is_a_config_error_naming_the_route() -> None:
    with pytest.raises(ConfigError, match=r"route '/secrets/\{id\}'.*encryption_keys is empty"):
        GuardMiddleware(Store().app(), registry=registry(), settings=settings({}))


async def test_bad_key_is_a_config_error_that_hides_the_key() -> None:
    short = "c2hvcnQ"
    with pytest.raises(ConfigError, match=r"route '/secrets/\{id\}'.*'k1' must be 32 bytes") as err:
        GuardMiddleware(Store().app(), registry=registry(), settings=settings({"k1": short}))
    assert short not in str(err.value)
    with pytest.raises(ConfigError, match="'nope' is not in encryption_keys"):
        GuardMiddleware(Store().app(), registry=registry(), settings=settings(primary="nope"))


async def test_routes_without_encryption_need_no_keys(make_client: Any) -> None:
    reg = RouteRegistry()
    reg.register("/secrets/{id}", JobConfig(), methods=["POST", "GET"])
    store = Store()
    client = make_client(GuardMiddleware(store.app(), registry=reg, settings=settings({})))
    assert (await client.post("/secrets/1", json={"secret": "plain"})).json() == {"secret": "plain"}


async def test_keys_from_the_environment_with_install(
    monkeypatch: pytest.MonkeyPatch, make_client: Any
) -> None:
    monkeypatch.setenv("ASGI_GUARD_ENCRYPTION_KEYS", json.dumps({"old": KEY_OLD, "new": KEY_NEW}))
    monkeypatch.setenv("ASGI_GUARD_ENCRYPTION_PRIMARY_KEY", "new")
    store = Store()
    app = store.app()
    install(app, registry(), GuardSettings(_env_file=None))
    client = make_client(app)
    assert (await client.post("/secrets/1", json={"secret": [1, 2]})).json() == {"secret": [1, 2]}
    assert envelope_kid(store.rows["1"]["secret"]) == "new"


async def test_keys_and_plaintext_never_logged(make_client: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    store = Store()
    guard_settings = settings()
    client = make_client(guarded(store, guard_settings))
    await client.post("/secrets/1", json={"secret": "top-secret-plaintext"})
    store.rows["1"]["secret"] += "x"
    await client.get("/secrets/1")
    assert KEY_OLD not in caplog.text and "top-secret-plaintext" not in caplog.text
    assert KEY_OLD not in repr(guard_settings)


async def test_config_validation() -> None:
    with pytest.raises(ValueError, match="names no JSON field"):
        EncryptionConfig(enable_encryption=True)
    with pytest.raises(ValueError, match="overlap"):
        EncryptionConfig(fields=["card", "card.number"])
    with pytest.raises(ValueError, match="dot-separated"):
        EncryptionConfig(fields=["card..number"])
    assert EncryptionConfig(fields=["a", "a", "b.c"]).fields == ["a", "b.c"]


class Card(BaseModel):
    number: str  # encrypted fields arrive as envelope strings, whatever the caller sent
    brand: str


class Payment(BaseModel):
    secret: str
    card: Card


async def test_fastapi_model_sees_ciphertext_and_caller_gets_plaintext(make_client: Any) -> None:
    saved: list[Payment] = []
    api = FastAPI()

    @api.post("/secrets/{id}", status_code=201)
    async def pay(id: str, payment: Payment) -> Payment:
        saved.append(payment)
        return payment

    only = RouteRegistry()  # every registry entry must match an app route: this app has one
    for entry in registry():
        if entry.template == "/secrets/{id}":
            only.register(entry.template, entry.config, ["POST"], name=entry.name)
    install(api, only, settings())
    client = make_client(api)
    # The model declares number: str, so the caller sends a string (an int is now a 422, issue 13).
    sent = {"secret": "pw", "card": {"number": "4111", "brand": "visa"}}
    response = await client.post("/secrets/1", json=sent)
    assert response.status_code == 201, response.text
    assert response.json() == sent
    assert envelope_kid(saved[0].secret) == "old" and envelope_kid(saved[0].card.number) == "old"


def test_rewrite_copies_on_write() -> None:
    from asgi_guard.stages.encryption.stage import _rewrite

    original = {"a": {"b": 1, "c": 2}, "list": [{"b": 1}]}
    snapshot = json.loads(json.dumps(original))
    changed, count = _rewrite(original, ("a", "b"), 0, lambda value: value + 1)
    assert count == 1 and changed == {"a": {"b": 2, "c": 2}, "list": [{"b": 1}]}
    assert original == snapshot and changed["list"] is original["list"]
    same, count = _rewrite(original, ("missing", "b"), 0, lambda value: value)
    assert count == 0 and same is original
