"""The shape every stage follows, after Starlette's own middlewares, and the chain builder.

A stage is built once per route that enables it, as `Stage(app, route, runtime)`, and called as an
ASGI app. `route` is a small, frozen `RouteInfo`: what every stage may know about the route (template,
label, path parameter names, resource id recipe, handler time-out, the names of the route's stages)
plus `route.config`, *this stage's own section* of the route's `JobConfig` (named by `Stage.section`).
A stage never sees the whole JobConfig, so it cannot read another stage's section.

At request time a stage finds the request's GuardContext at `scope["asgi_guard"]`. To reject, raise
`Problem(...)`; `asgi_guard.core.problems.answer_problem` (called by the telemetry stage, else by stage 0)
turns it into the response and records which stage rejected.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from starlette.types import ASGIApp, Receive, Scope, Send

from asgi_guard.core.context import BACKGROUND_EXEMPT

if TYPE_CHECKING:
    from asgi_guard.config import JobConfig
    from asgi_guard.core.pooling import PoolingConfig
    from asgi_guard.core.runtime import GuardRuntime
    from asgi_guard.registry import CompiledRoute
    from asgi_guard.state import Backend

C = TypeVar("C")
_PARAM = re.compile(r"{([a-zA-Z_][a-zA-Z0-9_]*)(?::[a-zA-Z_][a-zA-Z0-9_]*)?}")
InnerBuilder = Callable[[ASGIApp], ASGIApp]


def _no_inner(app: ASGIApp) -> ASGIApp:
    return app


@dataclass(frozen=True, slots=True)
class RouteInfo(Generic[C]):
    """What a stage knows about its route: built once per route and stage, at start-up.

    Two RouteInfos of one route compare (and hash) equal whatever their section: `(template, methods)`
    names a registered route, so stages of one route may use it as a shared key.
    """

    template: str  # the registered path template, Starlette syntax ("/jobs/{resource_id}")
    methods: frozenset[str]
    label: str  # endpoint_name, else the route's name: metrics labels, spans, keys, events
    trace_label: str = field(default="", compare=False)  # tracing.trace_label, else label: limit keys
    path_params: tuple[str, ...] = field(default=(), compare=False)  # parameter names in the template
    resource_id_field: str = field(default="resource_id", compare=False)
    resource_id_from_body: bool = field(default=False, compare=False)
    handler_timeout: float | None = field(default=None, compare=False)  # seconds (None: unbounded)
    pooling: PoolingConfig | None = field(default=None, compare=False)  # the route's own time-outs
    stages: frozenset[str] = field(default=frozenset(), compare=False)  # stages this route runs
    exempt: frozenset[str] = field(default=frozenset(), compare=False)  # stages its `exempt` may skip
    config: C = field(default=None, compare=False)  # type: ignore[assignment]  # this stage's section
    # Builds the stages *inside* this one around another terminal app (the events stage's offload
    # mode wraps them around its job enqueuer instead of the handler).
    build_inner: InnerBuilder = field(default=_no_inner, compare=False, repr=False)


class Stage(Generic[C]):
    """Base of every stage. `section` names its part of JobConfig (None: it needs none)."""

    name: ClassVar[str] = "stage"
    section: ClassVar[str | None] = None
    # True: the stage runs work of its own after a request through the stages inside it, with a
    # `GuardContext.revalidation` context (the cache's background refresh). Those inner stages then
    # find `core.context.BACKGROUND_EXEMPT` in their `RouteInfo.exempt`, so they ask
    # `ctx.exempt_from` and never charge or limit a client for the guard's own work.
    background_work: ClassVar[bool] = False

    def __init__(self, app: ASGIApp, route: RouteInfo[C], runtime: GuardRuntime) -> None:
        self.app = app
        self.route = route
        self.runtime = runtime
        self.config: C = route.config
        # every store call of this route is bounded by the route's own pooling.socket_timeout
        self.backend: Backend = runtime.backend_for(route.pooling)

    @classmethod
    def enabled_for(cls, config: C) -> bool:
        """Whether a route whose section is `config` needs this stage at all (else it costs nothing)."""
        return False

    @classmethod
    def enabled_in(cls, config: C, runtime: GuardRuntime) -> bool:
        """Whether, with the app's settings, this stage has anything to do (checked once, at build)."""
        return True

    @classmethod
    def needs_body(cls, config: C) -> bool:
        """Whether this stage reads the request body (the stack then replays it to the app)."""
        return False

    @classmethod
    def runs_before(cls, config: C) -> str | None:
        """The name of an outer stage this one must run before on this route (None: its usual place).

        The credits stage moves before the cache when the route charges cache hits."""
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


StageType = type[Stage[Any]]
Factory = Callable[[StageType, ASGIApp, RouteInfo[Any], "GuardRuntime"], ASGIApp]


def _with_section(base: RouteInfo[Any], section: Any, build_inner: InnerBuilder) -> RouteInfo[Any]:
    """`base` with a stage's section: dataclasses.replace, without its per-call field introspection
    (built once per stage and route: 60,000 times for 10,000 routes). Every other field is copied,
    whatever fields RouteInfo gains."""
    values = {name: getattr(base, name) for name in _COPIED}
    return RouteInfo(**values, config=section, build_inner=build_inner)


_COPIED = tuple(f.name for f in dataclasses.fields(RouteInfo) if f.name not in ("config", "build_inner"))


def section_of(config: JobConfig, stage: StageType) -> Any:
    """The part of `config` that `stage` may read (None when the stage names no section)."""
    return None if stage.section is None else getattr(config, stage.section)


def route_info(route: CompiledRoute, stages: frozenset[str] = frozenset()) -> RouteInfo[None]:
    """The section-less route info of a registered route."""
    config = route.config
    return RouteInfo(
        template=route.template,
        methods=route.methods,
        label=route.label,
        trace_label=config.tracing.trace_label or route.label,
        path_params=tuple(m.group(1) for m in _PARAM.finditer(route.template)),
        resource_id_field=config.resource_id_field,
        resource_id_from_body=config.resource_id_from_body,
        handler_timeout=config.handler_timeout,
        pooling=config.pooling,
        stages=stages,
        exempt=frozenset(config.exempt.stages) if config.exempt is not None else frozenset(),
    )


def build_chain(
    app: ASGIApp,
    route: CompiledRoute,
    runtime: GuardRuntime,
    stages: Sequence[StageType],
    factory: Factory | None = None,
) -> tuple[ASGIApp, bool]:
    """The route's chain of enabled stages around `app` (outermost first in `stages`), and whether
    any stage needs the request body. Each stage gets its own section and the route's `RouteInfo`.

    `factory(stage, app, info, runtime)` builds one stage (a tracing probe wraps them); default:
    the stage class itself.
    """
    config = route.config
    sections: dict[str | None, Any] = {None: None}  # composed sections (telemetry) are made once

    def section_for(stage: StageType) -> Any:
        if stage.section not in sections:
            sections[stage.section] = section_of(config, stage)
        return sections[stage.section]

    enabled = [
        (stage, section)
        for stage in stages
        if stage.enabled_for(section := section_for(stage)) and stage.enabled_in(section, runtime)
    ]
    enabled = _reorder(enabled)
    base = route_info(route, _shared_names(frozenset(stage.name for stage, _ in enabled)))
    make: Factory = factory or (lambda stage, inner, info, rt: stage(inner, info, rt))
    needs_body = config.resource_id_from_body
    bases: dict[StageType, RouteInfo[Any]] = {}
    current = base
    for stage, _ in enabled:  # stages inside one that does background work may exempt its contexts
        bases[stage] = current
        if stage.background_work and current is base:
            current = dataclasses.replace(base, exempt=base.exempt | BACKGROUND_EXEMPT)

    def wrap(terminal: ASGIApp, inner: list[tuple[StageType, Any]]) -> ASGIApp:
        built = terminal
        for position in range(len(inner) - 1, -1, -1):
            stage, section = inner[position]
            info = _with_section(bases[stage], section, _Inner(wrap, inner, position + 1))
            built = make(stage, built, info, runtime)
        return built

    for stage, section in enabled:
        needs_body = needs_body or stage.needs_body(section)
    return wrap(app, enabled), needs_body


class _Inner:
    """`RouteInfo.build_inner` of one stage: the stages after it, wrapped around a given terminal app
    (a slotted object, not a closure over a copied list: one per stage and route, 60,000 at 10,000
    routes)."""

    __slots__ = ("inner", "start", "wrap")

    def __init__(self, wrap: Callable[[ASGIApp, list[Any]], ASGIApp], inner: list[Any], start: int) -> None:
        self.wrap, self.inner, self.start = wrap, inner, start

    def __call__(self, terminal: ASGIApp) -> ASGIApp:
        return self.wrap(terminal, self.inner[self.start :])


_NAME_SETS: dict[frozenset[str], frozenset[str]] = {}


def _shared_names(names: frozenset[str]) -> frozenset[str]:
    """One object per distinct set of stage names (routes share a few combinations)."""
    if len(_NAME_SETS) > 1024:
        return names
    return _NAME_SETS.setdefault(names, names)


def _reorder(enabled: list[tuple[StageType, Any]]) -> list[tuple[StageType, Any]]:
    """Move each stage that asks to (`runs_before`) just outside the stage it names, if present."""
    for stage, section in list(enabled):
        target = stage.runs_before(section)
        if target is None:
            continue
        names = [s.name for s, _ in enabled]
        if target not in names:
            continue
        here, there = names.index(stage.name), names.index(target)
        if here > there:
            item = enabled.pop(here)
            enabled.insert(there, item)
    return enabled
