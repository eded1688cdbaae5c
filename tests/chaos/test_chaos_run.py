"""The chaos run: the example app under uvicorn (2 workers), real valkey-server and Pulsar, a bounded
load while the harness stops, kills and restarts both, then an exact reconciliation.

One run per module (a fixture); each invariant is its own test, so a broken one names itself. The
table is printed to the terminal and written to `$ASGI_GUARD_CHAOS_REPORT` (default: the run's
temporary directory). Knobs: ASGI_GUARD_CHAOS_REQUESTS (2400), ASGI_GUARD_CHAOS_SECONDS (60),
ASGI_GUARD_CHAOS_CONCURRENCY (24).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pulsar = pytest.importorskip("pulsar")

from chaos_load import CLIENT_TIMEOUT, Load, LoadPlan, Record  # noqa: E402
from chaos_reconcile import (  # noqa: E402
    Check,
    Ledger,
    check_answered,
    check_background,
    check_bad_input,
    check_balances,
    check_breaker,
    check_cache_isolation,
    check_client_charges,
    check_disconnects,
    check_events,
    check_idempotency,
    check_no_guard_500,
    check_problem_json,
    check_rate_limits,
    check_reservations,
    check_valid_served,
    check_valkey_restart,
    read_journal,
    table,
)
from chaos_services import DurableValkey, Uvicorn, broker_kill, broker_signal  # noqa: E402

from asgi_guard_dev.local import free_port  # noqa: E402
from asgi_guard_dev.pulsar import PulsarBroker, PulsarUnavailable, start_standalone  # noqa: E402

pytestmark = [pytest.mark.chaos, pytest.mark.valkey, pytest.mark.pulsar, pytest.mark.timeout(420)]

IO_TOPIC = "persistent://public/default/io-jobs"
CHAOS_TOPIC = "persistent://public/default/chaos-jobs"
SUBSCRIPTION = "chaos-audit"
KEY_PREFIX = "chaos"
USERS = [f"u{i}" for i in range(8)] + ["poor"]
GRANTS = {**{u: 400 for u in USERS}, "poor": 3}
BUCKETS = {"io_job": (3, 0.5), "chaos_job": (4, 1.0)}  # (capacity, refill/s) as the routes declare


@dataclass
class ChaosRun:
    records: list[Record]
    ledger: Ledger
    balances: dict[str, int]
    pending: dict[str, set[str]]
    events: list[dict[str, Any]]
    valkey_back: list[float]
    timeline: list[str]
    outbox_left: int
    timings: dict[str, float]
    checks: dict[str, Check] = field(default_factory=dict)


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


_LIFECYCLE = (
    "Child process",
    "died",
    "Started server process",
    "Finished server process",
    "Fatal",
    "Segmentation",
)


def _worker_lifecycle(log: str) -> list[str]:
    """uvicorn's lines about worker processes starting, dying and finishing (at most 20)."""
    return [line.strip()[:200] for line in log.splitlines() if any(w in line for w in _LIFECYCLE)][:20]


def _outbox_rows(path: Path) -> int:
    if not path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(path, timeout=5)) as db:
        try:
            return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


def _ledger_state(url: str) -> tuple[dict[str, int], dict[str, set[str]]]:
    """Raw reads (no script: the ledger's own ops would refund expired reservations first)."""
    import valkey

    client = valkey.Valkey.from_url(url.replace("valkey://", "redis://"))
    balances, pending = {}, {}
    try:
        for user in USERS:
            tag = "{default|" + user + "}"
            raw = client.get(f"{KEY_PREFIX}:credits:{tag}:balance")
            balances[user] = int(raw) if raw is not None else 0
            pending[user] = {k.decode() for k in client.hkeys(f"{KEY_PREFIX}:credits:{tag}:pending")}
    finally:
        client.close()
    return balances, pending


async def _grant(url: str) -> None:
    from asgi_guard.stages.credits import credit_store
    from asgi_guard.state import ValkeyBackend

    backend = ValkeyBackend(url, key_prefix=KEY_PREFIX)
    store = credit_store(backend)
    try:
        for user, amount in GRANTS.items():
            await store.set(user, amount)
    finally:
        await backend.close()


def _subscribe(service_url: str) -> None:
    """Durable subscriptions before the load, so every event is retained for the audit."""
    client = pulsar.Client(service_url, operation_timeout_seconds=30)
    try:
        for topic in (IO_TOPIC, CHAOS_TOPIC):
            client.subscribe(topic, SUBSCRIPTION, initial_position=pulsar.InitialPosition.Earliest).close()
    finally:
        client.close()


def _consume(service_url: str, quiet_ms: int = 3000) -> list[dict[str, Any]]:
    client = pulsar.Client(service_url, operation_timeout_seconds=30)
    events: list[dict[str, Any]] = []
    try:
        consumer = client.subscribe([IO_TOPIC, CHAOS_TOPIC], SUBSCRIPTION)
        while True:
            try:
                message = consumer.receive(timeout_millis=quiet_ms)
            except pulsar.Timeout:
                break
            consumer.acknowledge(message)
            events.append(json.loads(message.data()))
        consumer.close()
    finally:
        client.close()
    return events


class Chaos:
    """The fault schedule, run beside the load (blocking steps in threads)."""

    def __init__(self, valkey: DurableValkey, broker: PulsarBroker, started: float) -> None:
        self.valkey = valkey
        self.broker = broker
        self.started = started
        self.timeline: list[str] = []
        self.valkey_back: list[float] = []
        self.broker_thread: threading.Thread | None = None
        self.broker_error: BaseException | None = None

    def note(self, what: str) -> None:
        self.timeline.append(f"t={time.monotonic() - self.started:5.1f}s {what}")

    async def at(self, t: float) -> None:
        await asyncio.sleep(max(0.0, self.started + t - time.monotonic()))

    def _restart_broker(self) -> None:
        try:
            self.broker.start(timeout=150)
            self.note("broker back (produces again)")
        except BaseException as exc:  # reported by the fixture
            self.broker_error = exc

    async def run(self, duration: float) -> None:
        k = duration / 60  # the schedule scales with the load's length
        await self.at(6 * k)
        self.valkey.signal(signal.SIGSTOP)
        self.note("valkey SIGSTOP")
        await self.at(8.5 * k)
        self.valkey.signal(signal.SIGCONT)
        self.note("valkey SIGCONT")
        await self.at(14 * k)
        self.valkey.kill()
        self.note("valkey SIGKILL")
        await self.at(16 * k)
        await asyncio.to_thread(self.valkey.start)
        self.valkey_back.append(time.time())
        self.note("valkey restarted on the same port (PING answers)")
        await self.at(22 * k)
        broker_signal(self.broker, signal.SIGSTOP)
        self.note("broker SIGSTOP")
        await self.at(28 * k)
        broker_signal(self.broker, signal.SIGCONT)
        self.note("broker SIGCONT")
        await self.at(32 * k)
        broker_kill(self.broker)
        self.note("broker SIGKILL; restarting")
        self.broker_thread = threading.Thread(target=self._restart_broker, daemon=True)
        self.broker_thread.start()
        await self.at(42 * k)
        self.valkey.signal(signal.SIGSTOP)
        self.note("valkey SIGSTOP")
        await self.at(43.5 * k)
        self.valkey.signal(signal.SIGCONT)
        self.note("valkey SIGCONT")
        await self.at(48 * k)
        self.valkey.kill()
        self.note("valkey SIGKILL")
        await asyncio.to_thread(self.valkey.start)
        self.valkey_back.append(time.time())
        self.note("valkey restarted at once")


@pytest.fixture(scope="module")
def chaos_run(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[ChaosRun]:
    t0 = time.monotonic()
    work = tmp_path_factory.mktemp("chaos")
    timings: dict[str, float] = {}
    broker_box: dict[str, Any] = {}

    def start_broker() -> None:
        try:
            broker_box["broker"] = start_standalone(workdir=work / "pulsar")
        except BaseException as exc:
            broker_box["error"] = exc

    broker_thread = threading.Thread(target=start_broker, daemon=True)
    broker_thread.start()
    valkey = DurableValkey(free_port(), work / "valkey")
    valkey.start()
    asyncio.run(_grant(valkey.url))
    secret = base64.urlsafe_b64encode(os.urandom(32)).decode()
    enc_key = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    broker_thread.join(200)
    if "error" in broker_box or "broker" not in broker_box:
        valkey.stop()
        error = broker_box.get("error")
        if isinstance(error, PulsarUnavailable) and os.environ.get("ASGI_GUARD_REQUIRE_PULSAR") != "1":
            pytest.skip(f"Pulsar cannot run here: {error}")
        raise RuntimeError(f"Pulsar did not start: {error}")
    broker: PulsarBroker = broker_box["broker"]
    timings["services up"] = time.monotonic() - t0
    server = Uvicorn(
        {
            "ASGI_GUARD_VALKEY_URL": valkey.url,
            "ASGI_GUARD_PULSAR_URL": broker.service_url,
            "ASGI_GUARD_JWT_SECRET": secret,
            "ASGI_GUARD_ENCRYPTION_KEYS": json.dumps({"chaos-1": enc_key}),
            "ASGI_GUARD_OUTBOX_PATH": str(work / "outbox.sqlite3"),
            "ASGI_GUARD_KEY_PREFIX": KEY_PREFIX,
            "ASGI_GUARD_CACHE": str(work / "cache"),
            "CHAOS_JOURNAL_DIR": str(work),
        },
        work,
    )
    try:
        _subscribe(broker.service_url)
        server.start()
        timings["app up"] = time.monotonic() - t0
        plan = LoadPlan(
            server.base_url,
            secret,
            USERS,
            total=_env_int("ASGI_GUARD_CHAOS_REQUESTS", 2400),
            duration=float(_env_int("ASGI_GUARD_CHAOS_SECONDS", 60)),
            concurrency=_env_int("ASGI_GUARD_CHAOS_CONCURRENCY", 24),
        )
        load = Load(plan)

        async def drive() -> Chaos:
            chaos = Chaos(valkey, broker, time.monotonic())
            chaos_task = asyncio.create_task(chaos.run(plan.duration))
            await load.run()
            chaos.note(f"load done ({len(load.records)} requests)")
            await chaos_task
            return chaos

        chaos = asyncio.run(drive())
        timings["load done"] = time.monotonic() - t0
        if chaos.broker_thread is not None:
            chaos.broker_thread.join(160)
        if chaos.broker_error is not None:
            raise RuntimeError(f"the broker did not come back: {chaos.broker_error}")
        outbox = work / "outbox.sqlite3"
        deadline, calm = time.monotonic() + 90, 0
        while time.monotonic() < deadline and calm < 3:
            calm = calm + 1 if _outbox_rows(outbox) == 0 else 0
            time.sleep(1.0)
        chaos.note(f"outbox drained: {_outbox_rows(outbox)} rows left")
        timings["outbox drained"] = time.monotonic() - t0
        server.stop()
        outbox_left = _outbox_rows(outbox)
        chaos.note(f"uvicorn stopped (graceful); outbox rows left: {outbox_left}")
        started = sorted(path.name for path in work.glob("started-*"))  # one file per worker process
        if len(started) != server.workers:  # a worker died and was replaced: say so, with its log
            chaos.note(f"uvicorn: {len(started)} worker processes started for {server.workers}: {started}")
        for line in _worker_lifecycle(server.log()):
            chaos.note(f"uvicorn: {line}")
        balances, pending = _ledger_state(valkey.url)
        events = _consume(broker.service_url)
        timings["audit read"] = time.monotonic() - t0
    finally:
        server.stop()
        with contextlib.suppress(Exception):
            broker_kill(broker)
        broker.close()
        valkey.stop()
        shutil.rmtree(work / "pulsar", ignore_errors=True)  # hundreds of MB of ledgers
    run = ChaosRun(
        records=load.records,
        ledger=Ledger.of(read_journal(work)),
        balances=balances,
        pending={u: p for u, p in pending.items() if p},
        events=events,
        valkey_back=chaos.valkey_back,
        timeline=chaos.timeline,
        outbox_left=outbox_left,
        timings=timings,
    )
    checks = [
        check_reservations(run.ledger, run.pending),
        check_balances(run.ledger, GRANTS, run.balances, run.pending),
        check_client_charges(run.records, run.ledger),
        check_disconnects(run.records, run.ledger),
        check_background(run.records, run.ledger),
        check_rate_limits(run.records, BUCKETS),
        check_events(run.records, run.ledger, run.events),
        check_no_guard_500(run.records),
        check_bad_input(run.records, run.ledger),
        check_problem_json(run.records),
        check_answered(run.records, CLIENT_TIMEOUT),
        check_valkey_restart(run.records, run.valkey_back),
        check_breaker(run.records),
        check_idempotency(run.records, run.ledger),
        check_cache_isolation(run.records),
        check_valid_served(run.records),
    ]
    run.checks = {c.name: c for c in checks}
    statuses: dict[str, int] = {}
    for r in run.records:
        key = str(r.status) if r.status is not None else (r.error or "none").split(":")[0]
        statuses[key] = statuses.get(key, 0) + 1
    by_kind: dict[str, dict[str, int]] = {}
    for r in run.records:
        answer = f"{r.status}{':' + r.problem_slug if r.problem_slug else ''}" if r.status else str(r.error)
        answer = answer.split(":")[0] if r.status is None else answer
        counts = by_kind.setdefault(r.kind, {})
        counts[answer] = counts.get(answer, 0) + 1
    total = time.monotonic() - t0
    summary = [
        f"requests {len(run.records)} at concurrency {plan.concurrency} over {plan.duration:.0f}s; "
        f"answers {dict(sorted(statuses.items()))}",
        f"outbox rows left after graceful stop: {outbox_left}; wall {total:.0f}s ("
        + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items())
        + ")",
        *("  " + line for line in run.timeline),
        "answers by kind:",
        *(f"  {kind}: {dict(sorted(c.items()))}" for kind, c in sorted(by_kind.items())),
    ]
    with open(work / "records.jsonl", "w") as out:  # for a post-mortem beside journal and log
        for r in run.records:
            out.write(json.dumps(r.__dict__, default=str) + "\n")
    with open(work / "events.jsonl", "w") as out:
        for event in run.events:
            out.write(json.dumps(event, default=str) + "\n")
    text = table(checks, summary)
    report = Path(os.environ.get("ASGI_GUARD_CHAOS_REPORT", work / "chaos-report.txt"))
    report.write_text(text + "\n")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None:
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            reporter.write_line(text)
            reporter.write_line(f"(table in {report}; server log and journal in {work})")
    yield run


def _assert(run: ChaosRun, name: str) -> None:
    check = run.checks[name]
    assert check.ok, f"{name}: {check.observed}\n  " + "\n  ".join(check.violations)


def test_chaos_every_reservation_settled_exactly_once(chaos_run: ChaosRun) -> None:
    _assert(chaos_run, "every reservation settled exactly once")


def test_chaos_balances_equal_grants_minus_charges(chaos_run: ChaosRun) -> None:
    _assert(chaos_run, "balance = grant - charges")


def test_chaos_charged_iff_client_got_2xx(chaos_run: ChaosRun) -> None:
    _assert(chaos_run, "charged iff the client got a 2xx")


def test_chaos_hung_up_clients_are_refunded(chaos_run: ChaosRun) -> None:
    _assert(chaos_run, "hung-up clients refunded")


def test_chaos_background_tasks_complete_and_charge(chaos_run: ChaosRun) -> None:
    _assert(chaos_run, "background tasks complete and charge")


def test_chaos_no_rate_limit_exceeded_in_any_window(chaos_run: ChaosRun) -> None:
    _assert(chaos_run, "no rate limit exceeded in any window")


def test_chaos_every_success_event_on_topic_exactly_once(chaos_run: ChaosRun) -> None:
    _assert(chaos_run, "each success's event on the topic exactly once")


def test_chaos_outbox_empty_after_graceful_stop(chaos_run: ChaosRun) -> None:
    assert chaos_run.outbox_left == 0, f"{chaos_run.outbox_left} events still in the outbox after shutdown"


def test_chaos_no_guard_caused_500(chaos_run: ChaosRun) -> None:
    _assert(chaos_run, "no guard-caused 500")


def test_chaos_client_garbage_is_4xx_and_free(chaos_run: ChaosRun) -> None:
    _assert(chaos_run, "client garbage: 4xx, free")


def test_chaos_request_id_and_problem_json_on_every_answer(chaos_run: ChaosRun) -> None:
    _assert(chaos_run, "request id + problem+json on every answer")


def test_chaos_no_request_unanswered_past_bound(chaos_run: ChaosRun) -> None:
    _assert(chaos_run, "no request unanswered past its bound")


def test_chaos_valkey_restart_costs_no_later_request(chaos_run: ChaosRun) -> None:
    _assert(chaos_run, "valkey restart costs no later request")


def test_chaos_client_input_never_opens_breaker(chaos_run: ChaosRun) -> None:
    _assert(chaos_run, "client input never opens a breaker")


def test_chaos_idempotent_retries_replay_and_charge_once(chaos_run: ChaosRun) -> None:
    _assert(chaos_run, "idempotent retries replay, charge once")


def test_chaos_no_cross_user_cache_leak(chaos_run: ChaosRun) -> None:
    _assert(chaos_run, "no cross-user cache leak")


def test_chaos_valid_requests_are_served(chaos_run: ChaosRun) -> None:
    _assert(chaos_run, "valid requests are served")
