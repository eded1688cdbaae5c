"""Per-request state shared by the stages and the handler (`request.state.guard`)."""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from starlette.types import Message, Receive, Scope

from asgi_guard.core.problems import Problem, payload_too_large
from asgi_guard.state.keys import principal_part

if TYPE_CHECKING:
    from asgi_guard.core.runtime import GuardRuntime
    from asgi_guard.registry import CompiledRoute

SCOPE_KEY = "asgi_guard"
# The per-client stages (core.exemptions.ExemptStage) a revalidation context is exempt from: work the
# guard does on its own after a request charges nobody and spends nobody's limit.
BACKGROUND_EXEMPT: frozenset[str] = frozenset({"credits", "rate_limit"})
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")  # a \uD800-\uDFFF escape (maybe paired)
_NO_JSON = object()


@dataclass(slots=True, frozen=True)
class Principal:
    """Who made the request, as the security stage established it."""

    subject: str
    scopes: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset()
    amr: frozenset[str] = frozenset()
    claims: dict[str, Any] = field(default_factory=dict)


Outcome = Literal["allowed", "rejected", "answered"]
_EMPTY: Mapping[str, Any] = MappingProxyType({})


def declared_length(scope: Scope) -> int:
    """The request's Content-Length (0 when absent or not a number: the read itself is bounded).
    More than 18 digits is over any limit (and past what `int()` parses: 4,300 digits)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            if not value.isdigit():
                return 0
            return int(value) if len(value) <= 18 else 10**18
    return 0


async def _request_over() -> Message:
    """The receive of a finished request: the client is gone, as far as anyone still asks."""
    return {"type": "http.disconnect"}


_new_tuple = tuple.__new__


class Decision(NamedTuple):
    """What one stage decided about one request (`ctx.decide`): immutable, one per stage and request.

    - `outcome`: "allowed" (the request goes on), "rejected" (the stage refused it: a problem, or
      its own 4xx/5xx) or "answered" (the stage answered itself: a cache hit, a replay, an offload);
    - `reason`: a short snake_case word saying why (`"insufficient_credits"`, `"hit"`, ...), or None;
    - `detail`: scalars for logs and span attributes (`remaining`, ...): a mapping made for this
      decision alone (typed read-only; not copied into a proxy, to keep `decide` cheap).

    A NamedTuple, not a frozen dataclass: one is made per stage and request, and a tuple is the
    cheapest immutable record Python builds. `fields()` is what logs and span attributes show.
    """

    stage: str
    outcome: Outcome
    reason: str | None = None
    detail: Mapping[str, Any] = _EMPTY

    def fields(self) -> dict[str, Any]:
        """`{"outcome": ..., "reason": ..., **detail}` (reason left out when None)."""
        out: dict[str, Any] = {"outcome": self.outcome}
        if self.reason is not None:
            out["reason"] = self.reason
        out.update(self.detail)
        return out


class GuardContext:
    """Everything the stack learned about one request. Stages read and add; none re-parses.

    A plain slotted class (not a dataclass) because one is built per request: its __init__ is
    the cheapest Python allows.
    """

    __slots__ = (
        "_body",
        "_exempt",
        "_json",
        "_replayed",
        "_request_id",
        "_resource_id",
        "_resource_resolved",
        "client_ip",
        "decisions",
        "max_body_size",
        "method",
        "path",
        "path_params",
        "principal",
        "raw_receive",
        "rejected_by",
        "response_headers",
        "route",
        "runtime",
        "status",
        "tier",
        "usage",
    )

    def __init__(
        self,
        request_id: str | bytes,
        route: CompiledRoute,
        path_params: dict[str, Any],
        method: str,
        path: str,
        client_ip: str,
        runtime: GuardRuntime,
        raw_receive: Receive,
        max_body_size: int,
    ) -> None:
        self._request_id = request_id  # bytes (ASCII) until someone reads it as text
        self.route = route
        self.path_params = path_params
        self.method = method
        self.path = path
        self.client_ip = client_ip
        self.runtime = runtime
        self.raw_receive = raw_receive
        self.max_body_size = max_body_size
        self.principal: Principal | None = None
        self.response_headers: list[tuple[bytes, bytes]] = []
        self.status: int | None = None
        # written only by decide() and core.problems.answer_problem: the name of the stage that
        # rejected the request ("stack" for a problem no stage decided, such as a 413 body)
        self.rejected_by: str | None = None
        self.decisions: dict[str, Decision] = {}
        self._body: bytes | None = None
        self._replayed = False
        self._json: Any = _NO_JSON
        self._resource_id: str | None = None
        self._resource_resolved = False
        self.usage: int | None = None
        self.tier: str | None = None  # set by resolve_tier()
        self._exempt: frozenset[str] | None = None

    @property
    def request_id(self) -> str:
        """The request's id (X-Request-ID): up to 128 visible ASCII characters."""
        request_id = self._request_id
        if type(request_id) is bytes:  # the stack passes the header's bytes: decoded on first read
            request_id = self._request_id = request_id.decode()
        return request_id  # type: ignore[return-value]

    def finish(self) -> None:
        """The request is over: drop the server's receive. The server's per-request object holds the
        scope, the scope holds this context (`scope["state"]["guard"]`), and the server's `receive`
        is a method of that object: keeping it here would make every request a reference cycle,
        left to the cyclic GC (whose full collections then stall every request in flight)."""
        self.raw_receive = _request_over

    def __repr__(self) -> str:
        return f"GuardContext({self.method} {self.path} route={self.route.template!r} id={self.request_id})"

    def decide(self, stage: str, outcome: Outcome, reason: str | None = None, **detail: Any) -> Decision:
        """Record `stage`'s decision (replacing an earlier one of the same stage, e.g. a reservation
        later committed); a "rejected" one also names the stage that rejected the request."""
        # tuple.__new__ straight away: a third cheaper than the NamedTuple's own __new__ (hot path)
        decision: Decision = _new_tuple(Decision, (stage, outcome, reason, detail or _EMPTY))
        self.decisions[stage] = decision
        if outcome == "rejected":
            self.rejected_by = stage
        return decision

    def report_usage(self, units: int) -> None:
        """The handler's actual usage (say, tokens processed), `request.state.guard.report_usage(n)`.

        On a route with credits the commit keeps `units` of the reservation and refunds the rest; it
        never charges more than was reserved (the price declared up front is the maximum). The last
        report wins. Raises ValueError for anything but a whole number >= 0.
        """
        if isinstance(units, bool) or not isinstance(units, int) or units < 0:
            raise ValueError(f"usage is a whole number >= 0, got {units!r}")
        self.usage = units

    async def resolve_tier(self, scope: Scope, known: Collection[str] = ()) -> str | None:
        """The request's tier by the route's `tier` selector (asgi_guard.core.tiers), chosen once;
        None when the route has no tiers. A stage passes the tiers it lists as `known`: a tier it
        does not list is answered as the selector's default. Call after authentication."""
        config = self.route.config.tier
        if config is None:
            return None
        if self.tier is None:
            from asgi_guard.core.tiers import selector_for

            self.tier = await selector_for(config, self.route)(self, scope)
        if known and self.tier not in known:
            return config.default
        return self.tier

    async def exempt_from(self, stage: str, scope: Scope) -> bool:
        """Whether the global or the route's exemption (asgi_guard.core.exemptions) lets this request
        skip `stage` ("rate_limit" or "credits"); decided once per request, after authentication."""
        if self._exempt is None:
            if self.runtime.settings.exempt is None and self.route.config.exempt is None:
                self._exempt = frozenset()
            else:
                from asgi_guard.core.exemptions import exempt_stages

                self._exempt = await exempt_stages(self, scope)
        return stage in self._exempt

    def revalidation(
        self, request_id: str, method: str | None = None, *, charged: bool = False
    ) -> GuardContext:
        """A context for a revalidation the guard runs on its own after this request (the cache's
        stale-while-revalidate refresh), to run through the stages inside the one that starts it.

        The same route, principal, client, path, parameters, resource id, tier and buffered body
        (replayed by `receive()`; then no message ever comes: there is no client to leave); its own
        `request_id` (up to 128 visible ASCII characters, like any), `method` (default this one's),
        decisions, headers and status. It is exempt from `BACKGROUND_EXEMPT` (credits, rate limit):
        the chain builder lets the stages inside a `Stage.background_work` stage ask, so a
        revalidation is neither limited nor refused as a second charge of a settled request. With
        `charged`, credits are not exempt: the revalidation reserves and commits under its own id,
        against this principal (a refresh of an entry only this principal reads is its own work).
        """
        other = GuardContext(
            request_id,
            self.route,
            self.path_params,
            method or self.method,
            self.path,
            self.client_ip,
            self.runtime,
            _no_client,
            self.max_body_size,
        )
        other.principal = self.principal
        other._body = self._body if self._body is not None else b""
        other._json = self._json
        other._resource_id, other._resource_resolved = self._resource_id, self._resource_resolved
        other.tier = self.tier
        other._exempt = BACKGROUND_EXEMPT - {"credits"} if charged else BACKGROUND_EXEMPT
        return other

    @property
    def user_key(self) -> str:
        """The JWT subject, or the client IP for anonymous requests: for display (logs, handlers),
        never a state key (a subject may equal an IP address); keys use `principal_key`."""
        return self.principal.subject if self.principal is not None else self.client_ip

    @property
    def principal_key(self) -> str:
        """Who is asking, as one escaped state-key part in which subjects and client addresses live
        apart (`asgi_guard.state.keys.principal_part`): `alice`, `~10.1.2.3`. Call after the
        security stage has run."""
        principal = self.principal
        return principal_part(principal.subject if principal is not None else None, self.client_ip)

    # -- body -----------------------------------------------------------------------------------
    @property
    def body_buffered(self) -> bool:
        return self._body is not None

    async def body(self) -> bytes:
        """The whole request body, read once (413 past the limit) and replayed to the app."""
        if self._body is not None:
            return self._body
        chunks: list[bytes] = []
        size = 0
        limit = self.max_body_size
        while True:
            message = await self.raw_receive()
            if message["type"] == "http.disconnect":
                raise Problem(400, "client-disconnected", "Bad Request", "client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise payload_too_large(limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        self._body = b"".join(chunks)
        return self._body

    def replace_body(self, body: bytes, scope: Scope) -> None:
        """Swap the buffered body (encryption does) and keep Content-Length truthful."""
        self._body = body
        self._json = _NO_JSON
        scope["headers"] = [
            (k, str(len(body)).encode() if k == b"content-length" else v) for k, v in scope["headers"]
        ]

    async def receive(self) -> Message:
        """The receive the app sees: the buffered body once (read now if no stage has), then the
        client's own messages (such as http.disconnect)."""
        if not self._replayed:
            if self._body is None:
                await self.body()
            self._replayed = True
            return {"type": "http.request", "body": self._body or b"", "more_body": False}
        return await self.raw_receive()

    async def json(self) -> Any:
        """The body parsed as JSON (None when empty); broken JSON is a 400, never a 500."""
        if self._json is not _NO_JSON:
            return self._json
        raw = await self.body()
        if not raw.strip():
            self._json = None
            return None
        try:
            self._json = json.loads(raw, parse_constant=_not_json, parse_float=_finite_float)
            if _SURROGATE_ESCAPE.search(raw):  # rare: only then pay for the check
                json.dumps(self._json, ensure_ascii=False).encode()
        except UnicodeEncodeError as exc:  # "\ud800": valid JSON syntax, but not text (RFC 8259 8.2)
            raise Problem(
                400, "malformed-json", "Bad Request", "request body contains an unpaired surrogate"
            ) from exc
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise Problem(
                400, "malformed-json", "Bad Request", f"request body is not valid JSON: {exc}"
            ) from exc
        return self._json

    # -- resource id ----------------------------------------------------------------------------
    @property
    def resource_id(self) -> str | None:
        """The resource id resolved so far (path parameter, or the body field once read)."""
        if not self._resource_resolved:
            config = self.route.config
            value = self.path_params.get(config.resource_id_field)
            if value is not None:
                self._resource_id, self._resource_resolved = str(value), True
            elif config.resource_id_from_body and self._body is not None:
                self._resource_id, self._resource_resolved = self._body_field(), True
        return self._resource_id

    def _body_field(self) -> str | None:
        if self._json is _NO_JSON:
            try:
                self._json = json.loads(self._body) if self._body and self._body.strip() else None
            except (ValueError, UnicodeDecodeError, RecursionError):
                return None
        document = self._json
        if isinstance(document, dict):
            value = document.get(self.route.config.resource_id_field)
            if value is not None and not isinstance(value, (dict, list)):
                return str(value)
        return None

    async def resolve_resource_id(self) -> str | None:
        """Path parameter first; else, when the route says so, the named JSON body field."""
        if self.resource_id is not None or self._resource_resolved:
            return self._resource_id
        if self.route.config.resource_id_from_body:
            await self.json()
            self._resource_id = self._body_field()
        self._resource_resolved = True
        return self._resource_id


async def _no_client() -> Message:
    """The receive of a revalidation past its body: no client, so nothing ever arrives (a handler
    that listens for a disconnect, as Starlette's streaming responses do, is cancelled when done)."""
    await asyncio.get_running_loop().create_future()
    raise AssertionError("unreachable")  # pragma: no cover


def _not_json(name: str) -> Any:
    """`NaN`, `Infinity` and `-Infinity` are not JSON (RFC 8259 §6); Python's parser accepts them."""
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    """A JSON number as a float, refused when it overflows to infinity (e.g. `1e99999`): RFC 8259 §6
    lets a parser bound numbers, and an app's model (or its error rendering) cannot take infinity."""
    value = float(text)
    if value in (math.inf, -math.inf):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def get_guard(scope_or_request: Any) -> GuardContext | None:
    """The GuardContext of a request (or scope), or None on unregistered routes."""
    scope = getattr(scope_or_request, "scope", scope_or_request)
    ctx: GuardContext | None = scope.get(SCOPE_KEY)
    return ctx
