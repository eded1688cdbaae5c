"""examples/policies_app.py works as its docstring says (in-process, embedded backend)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import httpx

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "policies_app.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("policies_app_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def test_the_policies_example(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("ASGI_GUARD_JWT_SECRET", raising=False)
    example = load()
    transport = httpx.ASGITransport(app=example.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        await example.runtime.startup()
        await example.grant_demo_credits()
        free = {"authorization": "Bearer " + example.dev_token("free-user")}
        pro = {"authorization": "Bearer " + example.dev_token("pro-user", plan="pro")}
        answer = await http.post("/v1/complete", headers=free, json={"max_tokens": 512, "prompt": "hello"})
        assert answer.status_code == 200, answer.text
        assert answer.headers["ratelimit-policy"] == '"free";q=20000;w=60'
        assert answer.headers["x-ratelimit-limit"] == "20000"
        assert int(answer.headers["x-ratelimit-remaining"]) == 20000 - 512
        used = answer.json()["usage"]["tokens"]
        store = example.credit_store(example.runtime.backend)
        assert await store.balance("free-user") == 10_000 - used  # usage kept, the rest refunded
        models = await http.get("/v1/models", headers=pro)
        assert models.headers["ratelimit-policy"] == '"pro";q=100;w=60'
        too_big = await http.post("/v1/complete", headers=free, json={"max_tokens": 5000})
        assert too_big.status_code == 400
        assert (await http.post("/v1/complete", json={"max_tokens": 1})).status_code == 401
        await example.reloader.stop()
