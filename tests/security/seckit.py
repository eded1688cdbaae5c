"""Security test kit: keys, token minting, a real app with the stack, a real JWKS HTTP server."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_guard import GuardMiddleware, GuardSettings, JobConfig, RouteRegistry
from asgi_guard.config import SecurityConfig

SECRET = "s3cret-" * 10 + "0123"
ISSUER = "https://issuer.example"
AUDIENCE = "asgi-guard-tests"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**extra: Any) -> dict[str, Any]:
    """A valid claim set (alice, 5 minutes) with `extra` merged in; a None value drops the claim."""
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "alice",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 300,
        "scope": "jobs:read jobs:write",
        "roles": ["admin", "db_user"],
    }
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


def hs_token(secret: str = SECRET, alg: str = "HS256", **extra: Any) -> str:
    return jwt.encode(claims(**extra), secret, algorithm=alg)


@dataclass
class KeyPair:
    private: Any
    kid: str
    alg: str

    @property
    def public_pem(self) -> str:
        return (
            self.private.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )

    @property
    def jwk(self) -> dict[str, Any]:
        algorithm = jwt.get_algorithm_by_name(self.alg)
        data: dict[str, Any] = json.loads(algorithm.to_jwk(self.private.public_key()))
        data.update(kid=self.kid, use="sig")
        return data

    def token(self, kid: str | None = "default", headers: dict[str, Any] | None = None, **extra: Any) -> str:
        head = dict(headers or {})
        if kid == "default":
            kid = self.kid
        if kid is not None:
            head["kid"] = kid
        return jwt.encode(claims(**extra), self.private, algorithm=self.alg, headers=head)


@pytest.fixture(scope="session")
def rsa_key() -> KeyPair:
    return KeyPair(rsa.generate_private_key(public_exponent=65537, key_size=2048), "rsa-1", "RS256")


@pytest.fixture(scope="session")
def rsa_key2() -> KeyPair:
    return KeyPair(rsa.generate_private_key(public_exponent=65537, key_size=2048), "rsa-2", "RS256")


@pytest.fixture(scope="session")
def ec_key() -> KeyPair:
    return KeyPair(ec.generate_private_key(ec.SECP256R1()), "ec-1", "ES256")


async def whoami(request: Request) -> JSONResponse:
    guard = request.state.guard
    principal = guard.principal
    return JSONResponse(
        {
            "client_ip": guard.client_ip,
            "user_key": guard.user_key,
            "sub": principal.subject if principal else None,
            "scopes": sorted(principal.scopes) if principal else [],
            "roles": sorted(principal.roles) if principal else [],
            "amr": sorted(principal.amr) if principal else [],
        }
    )


def build_app(
    security: SecurityConfig | dict[str, Any], settings: GuardSettings | None = None, **kw: Any
) -> Any:
    """Starlette with one guarded route `/r` (and an unguarded `/open`), the whole stack mounted."""
    if isinstance(security, dict):
        security = SecurityConfig(**security)
    app = Starlette(routes=[Route("/r", whoami, methods=["GET", "POST"]), Route("/open", whoami)])
    registry = RouteRegistry()
    registry.register("/r", JobConfig(endpoint_name="secured", security=security))
    if "runtime" not in kw:
        kw["settings"] = settings or hs_settings()
    app.add_middleware(GuardMiddleware, registry=registry, **kw)
    return app


def hs_settings(**extra: Any) -> GuardSettings:
    values: dict[str, Any] = {
        "jwt_secret": SECRET,
        "jwt_algorithms": ["HS256"],
        "jwt_issuer": ISSUER,
        "jwt_audience": AUDIENCE,
        "metrics_path": "",
    }
    values.update(extra)
    return GuardSettings(**values)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_problem(response: Any, status: int, slug: str, error: str | None = None) -> dict[str, Any]:
    """Status, problem+json body with the request id, and the RFC 6750 challenge when one is due."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:asgi-guard:problem:{slug}"
    assert body["status"] == status
    assert body["title"] and body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]
    if error is None:
        assert "www-authenticate" not in response.headers
    else:
        challenge = response.headers["www-authenticate"]
        assert challenge.startswith('Bearer realm="asgi-guard"')
        assert f'error="{error}"' in challenge
    return body


# -- a real JWKS endpoint -------------------------------------------------------------------------
@dataclass
class JwksServer:
    url: str
    document: dict[str, Any] = field(default_factory=lambda: {"keys": []})
    status: int = 200
    delay: float = 0.0
    hits: int = 0

    def serve(self, *keys: KeyPair) -> None:
        self.document = {"keys": [k.jwk for k in keys]}


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    """A stdlib HTTP server on 127.0.0.1 serving `.document` at /jwks.json (status and delay settable)."""
    state = JwksServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits += 1
            if state.delay:
                time.sleep(state.delay)
            payload = json.dumps(state.document).encode()
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    yield state
    server.shutdown()
    server.server_close()
