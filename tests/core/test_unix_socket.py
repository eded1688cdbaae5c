"""Served on a unix socket (`uvicorn --uds`, behind nginx): the ASGI peer has no address.

Attack: two clients reach the app through the same proxy socket. Without a way to trust the socket's
peer, both were the anonymous address "unknown": one rate-limit bucket, one idempotency owner (A's stored
answer replayed to B for the same Idempotency-Key). `trusted_proxies=["unix"]` makes the socket peer a
trusted proxy whose forwarding header names the client; without it, no per-client state is shared.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

HERE = Path(__file__).parent
A = {"X-Forwarded-For": "198.51.100.7"}
B = {"X-Forwarded-For": "203.0.113.9"}


class Served:
    """A uvicorn subprocess on a unix socket, and an httpx client speaking to it as the proxy would."""

    def __init__(self, tmp_path: Path, trusted: list[str] | None, *flags: str) -> None:
        self.output: str | None = None
        sock = tmp_path / "app.sock"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
        env.pop("ASGI_GUARD_TRUSTED_PROXIES", None)
        if trusted is not None:
            env["ASGI_GUARD_TRUSTED_PROXIES"] = json.dumps(trusted)
        command = [sys.executable, "-m", "uvicorn", "_uds_app:app", "--uds", str(sock), *flags]
        self.proc = subprocess.Popen(
            command, env=env, cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.client = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(sock)), base_url="http://proxy", timeout=5
        )
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(self.stop())
            try:
                self.client.get("/nothing-here")
                return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise AssertionError("uvicorn did not start: " + self.stop()) from None
                time.sleep(0.1)

    def stop(self) -> str:
        """Stop the server (once); its output."""
        if self.output is not None:
            return self.output
        self.client.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        assert self.proc.stdout is not None
        with self.proc.stdout:
            self.output = self.proc.stdout.read()
        return self.output


def _served(tmp_path: Path, trusted: list[str] | None, *flags: str) -> Iterator[Served]:
    served = Served(tmp_path, trusted, *flags)
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture
def trusted_unix(tmp_path: Path) -> Iterator[httpx.Client]:
    for served in _served(tmp_path, ["unix"]):
        yield served.client


@pytest.fixture
def untrusted(tmp_path: Path) -> Iterator[Served]:
    yield from _served(tmp_path, None)


def _order(client: httpx.Client, headers: dict[str, str], key: str, body: str) -> httpx.Response:
    return client.post("/orders", headers={**headers, "Idempotency-Key": key}, content=body)


def test_trusted_unix_peer_gives_each_client_its_own_bucket(trusted_unix: httpx.Client) -> None:
    for _ in range(2):
        assert trusted_unix.get("/limited", headers=A).status_code == 200
    assert trusted_unix.get("/limited", headers=A).status_code == 429
    response = trusted_unix.get("/limited", headers=B)  # B never spent anything
    assert response.status_code == 200, response.text
    assert response.json()["client"] == "203.0.113.9"


def test_trusted_unix_peer_uses_the_rightmost_untrusted_hop(trusted_unix: httpx.Client) -> None:
    # the client wrote 10.0.0.1 itself; the proxy appended the address it saw
    response = trusted_unix.get("/limited", headers={"X-Forwarded-For": "10.0.0.1, 198.51.100.30"})
    assert response.json()["client"] == "198.51.100.30"


def test_trusted_unix_peer_never_replays_one_clients_answer_to_another(trusted_unix: httpx.Client) -> None:
    first = _order(trusted_unix, A, "key-1", "same body")
    assert first.status_code == 200
    assert _order(trusted_unix, A, "key-1", "same body").json() == first.json()  # A's own retry: replayed
    other = _order(trusted_unix, B, "key-1", "same body")
    assert other.status_code == 200
    assert other.json()["order"] != first.json()["order"]
    assert other.json()["client"] == "203.0.113.9"


def test_untrusted_unix_peer_shares_no_stored_answer(untrusted: Served) -> None:
    """Without "unix" trusted the guard cannot tell clients apart: it must not hand A's answer to B.
    An anonymous idempotent request is refused (503 problem+json) rather than keyed on "unknown"; the
    server logs the fix once."""
    client = untrusted.client
    for headers in (A, B, A):
        response = _order(client, headers, "key-2", "same body")
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"].endswith("idempotency-client-unknown")
    assert client.get("/limited", headers=A).status_code == 200  # routes without per-client answers serve
    output = untrusted.stop()
    assert output.count('trusted_proxies=["unix"]') == 1, output


def test_uvicorn_proxy_headers_leave_a_unix_peer_without_address(tmp_path: Path) -> None:
    """uvicorn's own --proxy-headers (on by default, --forwarded-allow-ips 127.0.0.1) never trusts a
    unix peer, so the guard sees `client` None and does the resolving itself."""
    for served in _served(tmp_path, ["unix"], "--proxy-headers"):
        response = served.client.get("/limited", headers={"X-Forwarded-For": "198.51.100.40"})
        assert response.json()["client"] == "198.51.100.40"
        bare = served.client.get("/limited")  # the proxy wrote no header: the peer stays unknown
        assert bare.json()["client"] == "unknown"
