"""Exact reconciliation of a chaos run: client records x server journal x Valkey state x topic.

Each check is exact: it counts every request it is about and names every one that breaks the rule.
Where the client cannot know an outcome (it hung up, the server's reply was lost), the server's
journal decides; where neither can, the request is left out of the bound it would otherwise loosen
(a rate-limit check counts only requests *confirmed* to have passed the limiter, which is sound).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos_load import Record

CREDIT_ROUTES = ("io_job", "chaos_job")
EVENT_ROUTES = ("io_job", "chaos_job")
GUARD_5XX_SLUGS = ("backend-unavailable", "circuit-open", "handler-timeout")


@dataclass
class Check:
    name: str
    expected: str
    observed: str
    ok: bool
    violations: list[str] = field(default_factory=list)


def read_journal(directory: Path) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for path in sorted(directory.glob("journal-*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                entries.append(json.loads(line))
    return entries


@dataclass
class Ledger:
    """Per request id: what the credit store was asked and what it answered."""

    reserve: dict[str, dict[str, Any]] = field(default_factory=dict)
    reserve_errors: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    settles: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    user_of: dict[str, str] = field(default_factory=dict)
    handler: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    bg_done: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, entries: Iterable[dict[str, Any]]) -> Ledger:
        ledger = cls()
        for e in entries:
            op, rid = e["op"], e.get("rid", "")
            if op == "reserve":
                ledger.user_of[rid] = e["user"]
                if "error" in e:
                    ledger.reserve_errors[rid].append(e["error"])
                elif e["status"] == 1:
                    ledger.reserve[rid] = e
            elif op in ("commit", "refund"):
                ledger.settles[rid].append(e)
            elif op in ("handler_start", "handler_end"):
                ledger.handler[rid].append(e)
            elif op == "bg_done":
                ledger.bg_done.add(rid)
        return ledger

    def done(self, rid: str) -> list[str]:
        return [s["op"] for s in self.settles.get(rid, []) if s.get("done")]

    def settle_failed(self, rid: str) -> bool:
        """A settle whose answer was lost (backend fault) or came back "nothing pending"."""
        return any("error" in s or not s.get("done") for s in self.settles.get(rid, []))

    def outcome(self, rid: str, pending: set[str]) -> str:
        """What became of a reservation: commit, refund, pending, late:<op>, or broken:<why>.

        A settle whose reply was lost was still applied if the reservation is gone from Valkey: a
        reservation expires only `ttl` (>= 60 s) after it was made and only when a later call on the
        same balance runs, which the run is too short for; so the lost call's own op is what ran."""
        done = self.done(rid)
        if len(done) == 1:
            return done[0]
        if len(done) > 1:
            return f"broken:settled {len(done)} times {done}"
        if rid in pending:
            return (
                "pending" if self.settle_failed(rid) or rid in self.reserve_errors else "broken:never settled"
            )
        attempts = self.settles.get(rid, [])
        if attempts:
            return "late:" + attempts[-1]["op"]
        return "broken:vanished without a settle"

    def committed(self, rid: str, pending: set[str] | None = None) -> bool:
        return self.outcome(rid, pending or set()) in ("commit", "late:commit")


def _fmt(items: Iterable[str], limit: int = 8) -> list[str]:
    items = list(items)
    return items[:limit] + ([f"... and {len(items) - limit} more"] if len(items) > limit else [])


def check_reservations(ledger: Ledger, pending: dict[str, set[str]]) -> Check:
    """Every reservation ended in exactly one commit or refund; one still pending is allowed only
    when its settlement failed on a backend fault (it is refunded at its deadline)."""
    all_pending = {rid for rids in pending.values() for rid in rids}
    bad, counts = [], Counter()
    for rid in ledger.reserve:
        outcome = ledger.outcome(rid, all_pending)
        if outcome.startswith("broken:"):
            bad.append(f"{rid}: {outcome[7:]}")
        else:
            counts[outcome] += 1
    late = [rid for rid in ledger.reserve_errors if rid in all_pending and rid not in ledger.reserve]
    if late:
        counts["pending: reserve reply lost, applied late"] += len(late)
    unknown = all_pending - set(ledger.reserve) - set(late)
    bad += [f"{rid}: pending in Valkey but never reserved per the journal" for rid in sorted(unknown)]
    observed = f"{len(ledger.reserve)} reserved: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    return Check(
        "every reservation settled exactly once",
        "commit xor refund per reservation",
        observed + (f"; {len(bad)} broken" if bad else ""),
        not bad,
        _fmt(bad),
    )


def check_balances(
    ledger: Ledger, grants: dict[str, int], balances: dict[str, int], pending: dict[str, set[str]]
) -> Check:
    """Per user: final balance == grant - committed charges - reservations still pending."""
    bad = []
    committed: Counter[str] = Counter()
    all_pending = {rid for rids in pending.values() for rid in rids}
    for rid, entry in ledger.reserve.items():
        if ledger.committed(rid, all_pending):
            committed[entry["user"]] += 1
    lines = []
    for user, grant in sorted(grants.items()):
        expect = grant - committed[user] - len(pending.get(user, ()))
        lines.append(f"{user}:{balances.get(user)}")
        if balances.get(user) != expect:
            bad.append(
                f"{user}: balance {balances.get(user)} != grant {grant} - committed {committed[user]}"
                f" - pending {len(pending.get(user, ()))} = {expect}"
            )
    return Check(
        "balance = grant - charges",
        "per user, exact",
        f"{len(grants)} users, {sum(committed.values())} charges, {len(bad)} off",
        not bad,
        _fmt(bad),
    )


def check_client_charges(records: list[Record], ledger: Ledger) -> Check:
    """A 2xx the client saw was charged (unless its commit hit a backend fault); a non-2xx was not."""
    bad = []
    n = 0
    for r in records:
        if r.route not in CREDIT_ROUTES or r.status is None or r.replayed or r.error:
            continue
        n += 1
        charged = ledger.committed(r.rid)
        if r.ok and not charged and not ledger.settle_failed(r.rid):
            bad.append(f"{r.kind} {r.rid}: client got {r.status}, not charged {ledger.done(r.rid)}")
        if not r.ok and charged:
            bad.append(f"{r.kind} {r.rid}: client got {r.status} {r.problem_slug}, but charged")
    return Check(
        "charged iff the client got a 2xx",
        "0 mismatches",
        f"{n} answered credit requests, {len(bad)} mismatches",
        not bad,
        _fmt(bad),
    )


def check_disconnects(records: list[Record], ledger: Ledger) -> Check:
    """A client that hung up before its response completed is refunded, never charged."""
    hung = [r for r in records if r.error == "hung_up"]
    bad = [
        f"{r.rid}: hung up after 0.15 s on a 0.4 s handler, charged" for r in hung if ledger.committed(r.rid)
    ]
    refunded = sum(1 for r in hung if ledger.done(r.rid) == ["refund"])
    return Check(
        "hung-up clients refunded",
        "0 charged",
        f"{len(hung)} hung up: {refunded} refunded, {len(bad)} charged",
        not bad,
        _fmt(bad),
    )


def check_background(records: list[Record], ledger: Ledger) -> Check:
    """A 2xx with a background task: the task completes and the request is charged."""
    bg = [r for r in records if r.kind == "chaos_bg" and r.ok]
    bad = []
    for r in bg:
        if r.rid not in ledger.bg_done:
            bad.append(f"{r.rid}: background task never completed")
        if not ledger.committed(r.rid) and not ledger.settle_failed(r.rid):
            bad.append(f"{r.rid}: 200 with a background task, not charged ({ledger.done(r.rid)})")
    return Check(
        "background tasks complete and charge",
        "all",
        f"{len(bg)} bg 2xx: {sum(r.rid in ledger.bg_done for r in bg)} completed",
        not bad,
        _fmt(bad),
    )


def check_no_guard_500(records: list[Record]) -> Check:
    """No 500 the handler did not ask for; no 5xx at all on client garbage except a backend outage."""
    bad = []
    for r in records:
        if r.status is None:
            continue
        if r.status == 500 and not r.deliberate_5xx:
            bad.append(f"{r.kind} {r.rid}: 500 {r.problem_slug or r.body}")
        elif r.kind == "hang_up":
            continue  # only its status line was read: a 503/504 there has no slug to judge
        elif r.status >= 500 and not r.deliberate_5xx and r.problem_slug not in GUARD_5XX_SLUGS:
            bad.append(f"{r.kind} {r.rid}: {r.status} {r.problem_slug or r.body}")
    by_kind = Counter(b.split()[0] for b in bad)
    return Check(
        "no guard-caused 500",
        "0",
        f"{len(bad)}" + (f" ({dict(by_kind)})" if bad else ""),
        not bad,
        _fmt(bad),
    )


# Garbage with one right answer (unless refused earlier, before the body or token mattered).
EXACT_REFUSAL = {"body_oversize": "payload-too-large", "token_missing": "missing-token"}
EARLIER_REFUSALS = ("rate-limited", "insufficient-credits", "backend-unavailable")


def check_bad_input(records: list[Record], ledger: Ledger) -> Check:
    """Client garbage gets a problem+json 4xx (or the outage's 503) and is never charged."""
    bad = []
    statuses: Counter[str] = Counter()
    for r in records:
        if not r.bad or r.status is None:
            continue
        statuses[f"{r.kind}:{r.status}"] += 1
        if ledger.committed(r.rid):
            bad.append(f"{r.kind} {r.rid}: charged ({r.status})")
        if r.status >= 500 and r.problem_slug != "backend-unavailable":
            bad.append(f"{r.kind} {r.rid}: {r.status} {r.problem_slug or r.body}")
        elif r.status < 400:
            bad.append(f"{r.kind} {r.rid}: accepted with {r.status}")
        elif r.kind in EXACT_REFUSAL and r.problem_slug not in (EXACT_REFUSAL[r.kind], *EARLIER_REFUSALS):
            bad.append(
                f"{r.kind} {r.rid}: {r.status} {r.problem_slug or 'not problem+json'}, not {EXACT_REFUSAL[r.kind]}"
            )
    kinds = Counter(b.split()[0] for b in bad)
    return Check(
        "client garbage: 4xx, free",
        "0 accepted/5xx/charged",
        f"{sum(statuses.values())} bad requests, {len(bad)} wrong" + (f" {dict(kinds)}" if bad else ""),
        not bad,
        _fmt(bad),
    )


def check_problem_json(records: list[Record]) -> Check:
    """Every response carries our X-Request-ID once; every guard rejection is problem+json with it."""
    bad = []
    for r in records:
        if r.status is None or r.kind == "hang_up":  # raw socket: only the status line was read
            continue
        ids = r.headers.get("x-request-id", [])
        if ids != [r.rid]:
            bad.append(f"{r.kind} {r.rid}: {r.status} X-Request-ID {ids}")
        if r.problem is not None and r.problem.get("request_id") != r.rid:
            bad.append(f"{r.kind} {r.rid}: problem body request_id {r.problem.get('request_id')!r}")
        if r.status in (401, 402, 403, 409, 413, 429, 503, 504) and r.problem is None:
            bad.append(f"{r.kind} {r.rid}: {r.status} is not problem+json ({r.content_type})")
    kinds = Counter(b.split()[0] for b in bad)
    return Check(
        "request id + problem+json on every answer",
        "0 missing",
        f"{len(bad)} missing" + (f" {dict(kinds)}" if bad else ""),
        not bad,
        _fmt(bad),
    )


def check_answered(records: list[Record], bound: float) -> Check:
    """No request unanswered past the client's bound (a deliberate hang-up aside)."""
    bad = [
        f"{r.kind} {r.rid}: {r.error} after {(r.t_recv or 0) - r.t_send:.2f}s"
        for r in records
        if r.error and not r.error.startswith("hung_up")
    ]
    slowest = max(((r.t_recv or 0) - r.t_send for r in records if not r.error), default=0.0)
    return Check(
        "no request unanswered past its bound",
        f"0 over {bound:.0f}s",
        f"{len(bad)} unanswered; slowest answer {slowest:.2f}s",
        not bad,
        _fmt(bad),
    )


def token_bucket_violations(
    intervals: list[tuple[float, float]], capacity: int, rate: float, slack: float = 0.005
) -> list[str]:
    """Sound check of "a bucket of `capacity` refilled at `rate`/s": requests confirmed allowed whose
    [send, receive] intervals lie in [s_i, e_j] were decided inside it, so at most
    capacity + rate * (e_j - s_i) of them may exist (pinned meaning: the bucket starts full)."""
    out = []
    spans = sorted(intervals)
    n = len(spans)
    for i in range(n):
        s_i = spans[i][0]
        inside_ends: list[float] = sorted(e for s, e in spans[i:] if s >= s_i)
        for count, e_j in enumerate(inside_ends, start=1):
            bound = capacity + rate * (e_j - s_i) + slack
            if count > bound:
                out.append(f"{count} allowed within {e_j - s_i:.3f}s (bound {bound:.2f})")
                break
    return out


def check_rate_limits(records: list[Record], buckets: dict[str, tuple[int, float]]) -> Check:
    """Per limit key (route, user, resource): no window admitted more than the token bucket allows."""
    keys: dict[tuple[str, str, str], list[tuple[float, float]]] = defaultdict(list)
    for r in records:
        if r.route in buckets and r.limiter_allowed and r.t_recv is not None and not r.bad:
            keys[(r.route, r.user, r.resource)].append((r.t_send, r.t_recv))
    bad = []
    for key, spans in sorted(keys.items()):
        capacity, rate = buckets[key[0]]
        for v in token_bucket_violations(spans, capacity, rate)[:1]:
            bad.append(f"{'/'.join(key)}: {v}")
    limited = sum(1 for r in records if r.status == 429)
    allowed = sum(len(v) for v in keys.values())
    return Check(
        "no rate limit exceeded in any window",
        "0 windows over",
        f"{len(keys)} keys, {allowed} confirmed allowed, {limited} x 429, {len(bad)} keys over",
        not bad,
        _fmt(bad),
    )


def check_events(records: list[Record], ledger: Ledger, events: list[dict[str, Any]]) -> Check:
    """After the outbox drained: each successful request's event is on its topic exactly once; any
    other event belongs to a request whose handler answered 2xx but whose client never saw it."""
    seen = Counter(e.get("request_id") for e in events)
    successes = {r.rid for r in records if r.route in EVENT_ROUTES and r.ok and not r.replayed}
    unseen_ok = {r.rid for r in records if r.route in EVENT_ROUTES and (r.error or r.status is None)}
    bad = [f"{rid}: 2xx, event missing" for rid in sorted(successes) if seen[rid] == 0]
    bad += [f"{rid}: event {n} times" for rid, n in sorted(seen.items()) if n > 1]
    extra = {rid for rid in seen if rid not in successes}
    bad += [f"{rid}: event for a request without a 2xx" for rid in sorted(extra - unseen_ok)]
    dupes = sum(n - 1 for n in seen.values() if n > 1)
    return Check(
        "each success's event on the topic exactly once",
        f"{len(successes)} events",
        f"{len(events)} received: {len(successes & set(seen))} matched, {dupes} duplicates, "
        f"{len(successes - set(seen))} missing, {len(extra & unseen_ok)} from hung-up clients",
        not bad,
        _fmt(bad),
    )


def check_valkey_restart(records: list[Record], back_at: list[float], grace: float = 0.25) -> Check:
    """A request that arrives after valkey-server is back (PING answers) costs nothing: no 503."""
    bad = []
    for r in records:
        if r.problem_slug != "backend-unavailable":
            continue
        for t in back_at:
            if t + grace <= r.t_send <= t + 5:
                bad.append(f"{r.kind} {r.rid}: 503 {r.t_send - t:.2f}s after valkey was back")
                break
    outage = sum(1 for r in records if r.problem_slug == "backend-unavailable")
    return Check(
        "valkey restart costs no later request",
        "0 x 503 after it is back",
        f"{outage} x 503 in all, {len(bad)} after it was back",
        not bad,
        _fmt(bad),
    )


def check_breaker(records: list[Record]) -> Check:
    """io_job's handler never fails on its own: its circuit must never open (client input must not
    trip it)."""
    opened = [r for r in records if r.route == "io_job" and r.problem_slug == "circuit-open"]
    bad = [f"{r.kind} {r.rid}: circuit-open" for r in opened]
    chaos_open = sum(1 for r in records if r.route == "chaos_job" and r.problem_slug == "circuit-open")
    return Check(
        "client input never opens a breaker",
        "0 io_job circuit-open",
        f"{len(opened)} io_job circuit-open; chaos_job (deliberate failures) {chaos_open}",
        not bad,
        _fmt(bad),
    )


def check_idempotency(records: list[Record], ledger: Ledger) -> Check:
    """Per Idempotency-Key: the handler's work is charged at most once; a retry after success replays."""
    by_key: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        if r.idem_key:
            by_key[r.idem_key].append(r)
    bad = []
    replays = 0
    for key, rs in by_key.items():
        charges = [r.rid for r in rs if ledger.committed(r.rid)]
        if len(charges) > 1:
            bad.append(f"key {key}: charged {len(charges)} times")
        replays += sum(r.replayed for r in rs)
        first_ok = [r for r in rs if r.kind == "chaos_idem_first" and r.ok and r.t_recv]
        for r in rs:
            if r.kind == "chaos_idem_retry" and first_ok and r.t_send > first_ok[0].t_recv and r.ok:
                if not r.replayed:
                    bad.append(f"key {key}: retry {r.rid} after a 2xx ran again instead of replaying")
    return Check(
        "idempotent retries replay, charge once",
        "0 double charges",
        f"{len(by_key)} keys, {replays} replays, {len(bad)} wrong",
        not bad,
        _fmt(bad),
    )


VALID_KINDS = ("io_job", "job_status", "chaos_ok", "chaos_bg", "chaos_idem_first", "chaos_idem_retry")
EXPECTED_REFUSALS = (
    "insufficient-credits",
    "rate-limited",
    "backend-unavailable",
    "circuit-open",
    "idempotency-key-in-use",
)


def check_valid_served(records: list[Record]) -> Check:
    """A valid request is served unless a limit, the balance or an outage says no: a guard that
    refuses good input fails this even when every ledger balances."""
    bad = []
    for r in records:
        if r.kind not in VALID_KINDS or r.status is None or r.ok:
            continue
        if r.problem_slug in EXPECTED_REFUSALS or (r.kind == "chaos_idem_retry" and r.status == 409):
            continue
        bad.append(f"{r.kind} {r.rid}: {r.status} {r.problem_slug or r.body}")
    kinds = Counter(" ".join(b.split()[:1] + b.split()[2:4]) for b in bad)
    served = sum(1 for r in records if r.kind in VALID_KINDS and r.ok)
    return Check(
        "valid requests are served",
        "0 refused for no reason",
        f"{served} served, {len(bad)} refused" + (f" {dict(kinds.most_common(4))}" if bad else ""),
        not bad,
        _fmt(bad),
    )


def check_cache_isolation(records: list[Record]) -> Check:
    """GET /jobs/{id} is cached per verified subject: nobody sees another user's `viewer`."""
    bad = [
        f"{r.rid}: {r.user} got viewer {r.body.get('viewer')!r} ({r.header('x-cache')})"
        for r in records
        if r.route == "job_status" and r.ok and isinstance(r.body, dict) and r.body.get("viewer") != r.user
    ]
    hits = sum(1 for r in records if r.route == "job_status" and r.header("x-cache") == "HIT")
    return Check(
        "no cross-user cache leak",
        "0",
        f"{hits} hits, {len(bad)} leaks",
        not bad,
        _fmt(bad),
    )


def table(checks: list[Check], summary: list[str]) -> str:
    w1 = max(len(c.name) for c in checks)
    w2 = max(len(c.expected) for c in checks)
    lines = ["", "chaos reconciliation", *summary, ""]
    lines.append(f"{'check':<{w1}}  {'expected':<{w2}}  verdict  observed")
    lines.append("-" * (w1 + w2 + 60))
    for c in checks:
        lines.append(f"{c.name:<{w1}}  {c.expected:<{w2}}  {'PASS' if c.ok else 'FAIL':<7}  {c.observed}")
        lines += [f"{'':<{w1}}    - {v}" for v in c.violations[:4]]
    return "\n".join(lines)
