"""A stored HTTP response (status, headers, body) and its compact wire form.

Shared by the response cache and idempotency replay. The wire form is one JSON line (status and
headers, latin-1 safe) followed by the raw body, so a Valkey value needs no base64.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from starlette.types import Send

Headers = tuple[tuple[bytes, bytes], ...]


@dataclass(slots=True, frozen=True)
class CachedResponse:
    status: int
    headers: Headers
    body: bytes

    def encode(self) -> bytes:
        head = {"s": self.status, "h": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in self.headers]}
        return json.dumps(head, separators=(",", ":")).encode() + b"\n" + self.body

    @classmethod
    def decode(cls, raw: bytes) -> CachedResponse:
        head, _, body = raw.partition(b"\n")
        doc = json.loads(head)
        headers = tuple((k.encode("latin-1"), v.encode("latin-1")) for k, v in doc["h"])
        return cls(int(doc["s"]), headers, body)

    async def send(self, send: Send, extra: list[tuple[bytes, bytes]]) -> None:
        """Answer with this response plus `extra` headers."""
        await send({"type": "http.response.start", "status": self.status, "headers": [*self.headers, *extra]})
        await send({"type": "http.response.body", "body": self.body, "more_body": False})


def directives(value: bytes) -> set[str]:
    """Cache-Control directive names (lower case, arguments dropped except `max-age=0`)."""
    found: set[str] = set()
    for part in value.decode("latin-1").split(","):
        token = part.strip().lower().replace(" ", "")
        if token == "max-age=0":
            found.add(token)
        elif token:
            found.add(token.split("=", 1)[0])
    return found


def header_values(headers: list[tuple[bytes, bytes]] | Headers, name: bytes) -> bytes | None:
    """All values of header `name` (lower-case bytes) joined with commas, or None."""
    values = [v for k, v in headers if k.lower() == name]
    if not values:
        return None
    return b",".join(values)
