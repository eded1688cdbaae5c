"""Stage 9: Pulsar event publishing (`publish`) and job offload (`offload`).

Neither mode waits for the broker: events and jobs go to the app's background `EventPublisher`
(which retries, then keeps them in the durable outbox). `publish` runs the handler and, on a 2xx,
hands over one event; `offload` answers 202 with a job id and never runs the handler in-process.
"""

from __future__ import annotations

import base64
import time
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Receive, Scope, Send

from asgi_guard.core.context import SCOPE_KEY, GuardContext
from asgi_guard.core.stage import RouteInfo, Stage
from asgi_guard.stages.events.envelope import EVENT_SCHEMA, JOB_SCHEMA, dumps, new_id, now_ms, trace_context
from asgi_guard.stages.events.outbox import OutboxEvent
from asgi_guard.stages.events.publisher import EventPublisher, RetryPolicy

if TYPE_CHECKING:
    from asgi_guard.core.runtime import GuardRuntime
    from asgi_guard.stages.events.config import PulsarLabelingConfig

PUBLISHER_SERVICE = "events.publisher"


def get_publisher(runtime: GuardRuntime, send_timeout: float = 5.0) -> EventPublisher:
    """The app's one publisher; its start (outbox drain) and flush ride the runtime's lifespan."""

    def make() -> EventPublisher:
        from asgi_guard.stages.events.outbox import Outbox

        settings = runtime.settings
        publisher = EventPublisher(
            settings.pulsar_url,
            Outbox(settings.outbox_path),
            send_timeout=send_timeout,
            metrics=runtime.metrics,
        )
        runtime.on_startup(publisher.start)
        runtime.on_shutdown(publisher.close)
        return publisher

    return runtime.service(PUBLISHER_SERVICE, make)


class EventsMiddleware(Stage["PulsarLabelingConfig"]):
    name = "events"
    section = "pulsar_labeling"

    def __init__(self, app: ASGIApp, route: RouteInfo[PulsarLabelingConfig], runtime: GuardRuntime) -> None:
        super().__init__(app, route, runtime)
        cfg = self.config
        self.publisher = get_publisher(runtime, cfg.send_timeout)
        self.topic = cfg.job_topic
        self.policy = RetryPolicy(cfg.max_retries, cfg.retry_delay)
        self.endpoint = route.label
        self.template = route.template
        self.event_label = cfg.event_label
        self.cluster = cfg.cluster_name
        self.producer_label = cfg.producer_label
        self.status_lo, self.status_hi = cfg.publish_statuses
        kind = "job" if cfg.mode == "offload" else "event"
        self.properties = {
            "producer": cfg.producer_label,
            "event": cfg.event_label,
            "cluster": cfg.cluster_name,
            "schema": JOB_SCHEMA if kind == "job" else EVENT_SCHEMA,
            "kind": kind,
        }
        self.offload = cfg.mode == "offload"
        self.offload_app: ASGIApp = self._enqueue
        if self.offload:
            # The stages inside this one (encryption), built by the chain builder around the job
            # enqueuer instead of the handler, so an offloaded job carries the body exactly as the
            # handler would have seen it.
            self.offload_app = route.build_inner(self._enqueue)

    @classmethod
    def enabled_for(cls, config: PulsarLabelingConfig) -> bool:
        return config.enabled

    @classmethod
    def needs_body(cls, config: PulsarLabelingConfig) -> bool:
        return config.enabled and config.mode == "offload"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx: GuardContext = scope[SCOPE_KEY]
        if self.offload:
            await self.offload_app(scope, receive, send)
            return
        started = time.perf_counter()
        await self.app(scope, receive, send)
        status = ctx.status
        if status is None or not self.status_lo <= status <= self.status_hi:
            ctx.decide(self.name, "allowed", "not_published", mode="publish", published=False)
            return
        event_id = new_id()
        principal = ctx.principal
        resource_id = ctx.resource_id
        document = {
            "schema": EVENT_SCHEMA,
            "event_id": event_id,
            "event": self.event_label,
            "endpoint": self.endpoint,
            "route": self.template,
            "method": ctx.method,
            "path": ctx.path,
            "resource_id": resource_id,
            "subject": principal.subject if principal is not None else None,
            "status": status,
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
            "request_id": ctx.request_id,
            "occurred_at": now_ms(),
            "producer": self.producer_label,
            "cluster": self.cluster,
            "trace": trace_context(),
        }
        self.publisher.submit(
            OutboxEvent(self.topic, dumps(document), resource_id, self.properties), self.policy
        )
        ctx.decide(self.name, "allowed", "published", mode="publish", published=True, event_id=event_id)

    async def _enqueue(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The terminal app of offload mode: publish the request as a job, answer 202."""
        ctx: GuardContext = scope[SCOPE_KEY]
        body = await ctx.body()
        resource_id = await ctx.resolve_resource_id()
        job_id = new_id()
        principal = ctx.principal
        content_type = ""
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value.decode("latin-1")
                break
        try:
            text: str = body.decode("utf-8")
            encoding = "utf-8"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(body).decode(), "base64"
        document: dict[str, Any] = {
            "schema": JOB_SCHEMA,
            "job_id": job_id,
            "event": self.event_label,
            "endpoint": self.endpoint,
            "route": self.template,
            "method": ctx.method,
            "path": ctx.path,
            "path_params": ctx.path_params,
            "query": scope.get("query_string", b"").decode("latin-1"),
            "content_type": content_type,
            "body": text,
            "body_encoding": encoding,
            "resource_id": resource_id,
            "subject": principal.subject if principal is not None else None,
            "request_id": ctx.request_id,
            "enqueued_at": now_ms(),
            "producer": self.producer_label,
            "cluster": self.cluster,
            "trace": trace_context(),
        }
        self.publisher.submit(
            OutboxEvent(self.topic, dumps(document), resource_id, {**self.properties, "job_id": job_id}),
            self.policy,
        )
        ctx.decide(self.name, "answered", "offloaded", mode="offload", job_id=job_id)
        payload = dumps({"job_id": job_id, "status": "accepted"})
        await send(
            {
                "type": "http.response.start",
                "status": 202,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"x-job-id", job_id.encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload, "more_body": False})
