"""A stored HTTP response (status, headers, body) and its compact wire form.

Shared by the response cache and idempotency replay. The wire form is one JSON line (status and
headers, latin-1 safe) followed by the raw body, so a Valkey value needs no base64.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from starlette.types import Send

Headers = tuple[tuple[bytes, bytes], ...]


@dataclass(slots=True, frozen=True)
class CachedResponse:
    status: int
    headers: Headers
    body: bytes
    meta: dict[str, Any] = field(default_factory=dict, compare=False)  # the cache's freshness notes

    def encode(self) -> bytes:
        head: dict[str, Any] = {
            "s": self.status,
            "h": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in self.headers],
        }
        if self.meta:
            head["m"] = self.meta
        return json.dumps(head, separators=(",", ":")).encode() + b"\n" + self.body

    @classmethod
    def decode(cls, raw: bytes) -> CachedResponse:
        head, _, body = raw.partition(b"\n")
        doc = json.loads(head)
        headers = tuple((k.encode("latin-1"), v.encode("latin-1")) for k, v in doc["h"])
        return cls(int(doc["s"]), headers, body, doc.get("m") or {})

    async def send(self, send: Send, extra: list[tuple[bytes, bytes]], *, body: bool = True) -> None:
        """Answer with this response plus `extra` headers (`body=False`: headers only, for HEAD)."""
        await send({"type": "http.response.start", "status": self.status, "headers": [*self.headers, *extra]})
        await send({"type": "http.response.body", "body": self.body if body else b"", "more_body": False})


def header_values(headers: list[tuple[bytes, bytes]] | Headers, name: bytes) -> bytes | None:
    """All values of header `name` (lower-case bytes) joined with commas, or None."""
    values = [v for k, v in headers if k.lower() == name]
    if not values:
        return None
    return b",".join(values)
