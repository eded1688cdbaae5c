"""Idempotency records as a pure, clock-injected model: what memory.py and the two scripts must do.

Per key: nothing, or a record (state running|done, fingerprint, owner token, response, expires).
A record whose `expires <= now` is gone. `claim` on a free key makes a running record for `lock_ttl`;
on a held key it answers mismatch (another fingerprint), running, or done with the response, and
changes nothing; a running claim asked for again with its own owner token answers new (so the
script is safe to retry after a lost reply). `finish` (owner of a running claim only) makes it
done for `ttl`; `release` (the same) deletes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from asgi_guard.core.http import CachedResponse
from asgi_guard.stages.idempotency.store import Claim


@dataclass(slots=True)
class _Record:
    state: str
    fingerprint: str
    token: str
    expires: float
    response: CachedResponse | None = None


@dataclass
class ReferenceRecords:
    records: dict[str, _Record] = field(default_factory=dict)

    def _live(self, key: str, now: float) -> _Record | None:
        record = self.records.get(key)
        if record is not None and record.expires <= now:
            del self.records[key]
            return None
        return record

    def claim(self, key: str, fingerprint: str, token: str, lock_ttl: float, now: float) -> Claim:
        record = self._live(key, now)
        if record is None:
            self.records[key] = _Record("running", fingerprint, token, now + lock_ttl)
            return Claim("new")
        if record.fingerprint != fingerprint:
            return Claim("mismatch")
        if record.state == "running":  # the owner's own claim again (a retried call) is new
            return Claim("new" if record.token == token else "running")
        return Claim("done", record.response)

    def _owned(self, key: str, token: str, now: float) -> _Record | None:
        record = self._live(key, now)
        return record if record is not None and record.state == "running" and record.token == token else None

    def finish(self, key: str, token: str, response: CachedResponse, ttl: float, now: float) -> bool:
        record = self._owned(key, token, now)
        if record is None:
            return False
        self.records[key] = _Record("done", record.fingerprint, token, now + ttl, response)
        return True

    def release(self, key: str, token: str, now: float) -> bool:
        if self._owned(key, token, now) is None:
            return False
        del self.records[key]
        return True
