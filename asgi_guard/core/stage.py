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
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel
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

    @classmethod
    def validation_key(cls, config: C) -> Hashable:
        """What this stage's construction depends on, besides the route's settings and the runtime.

        A route's chain is built on its first request; at start-up the guard builds, eagerly, every
        route that brings a stage a key (with the route's settings) not seen before, so each
        distinct way a stage can fail (a ConfigError) or register something app-wide (redaction,
        shared services, start-up hooks) happens before anything is served. Default: the whole
        section (`section_key`). A stage whose section holds per-route names (span names, labels)
        that cannot make it fail may return less. Its errors must not depend on the route's label
        or template (those are not in the key), and app-wide start-up hooks go through
        `runtime.service` (made once, by the first construction, before start-up), since later
        constructions may happen after it."""
        return section_key(config)

    @classmethod
    def declare(cls, route: RouteInfo[C], runtime: GuardRuntime) -> None:
        """Per-route registration that must exist from start-up even when the route's chain is built
        later, on its first request (e.g. the cache's namespace, so a purge reaches it). Called
        once per route that enables the stage and is not built at start-up. Default: nothing."""
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


def route_info(
    route: CompiledRoute, stages: frozenset[str] = frozenset(), section: Any = None
) -> RouteInfo[Any]:
    """The route info of a registered route (with a stage's `section`, else section-less)."""
    config = route.config
    return RouteInfo(
        config=section,
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


@dataclass(slots=True)
class ChainPlan:
    """A route's enabled stages with their sections, in run order, before anything is built."""

    enabled: list[tuple[StageType, Any]]
    needs_body: bool  # whether any stage (or the route's resource id) reads the request body
    names: frozenset[str]  # the enabled stages' names (shared between routes)


def plan_chain(route: CompiledRoute, runtime: GuardRuntime, stages: Sequence[StageType]) -> ChainPlan:
    """Which of `stages` (outermost first) `route` enables, each with its own section: cheap class
    methods only (`enabled_for`, `enabled_in`, `needs_body`, `runs_before`); no stage is built."""
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
    needs_body = config.resource_id_from_body
    for stage, section in enabled:
        needs_body = needs_body or (_overrides(stage, "needs_body") and stage.needs_body(section))
    return ChainPlan(enabled, needs_body, _shared_names(frozenset(stage.name for stage, _ in enabled)))


def replan(route: CompiledRoute, stages: Sequence[StageType], needs_body: bool) -> ChainPlan:
    """The plan `plan_chain` made earlier for `route` (its enabled `stages`, in run order), with each
    stage's section taken again from the route's config (equal values): a chain built later has
    exactly the stages it was checked with, whatever the runtime's state is by then."""
    config = route.config
    sections: dict[str | None, Any] = {None: None}
    enabled = []
    for stage in stages:
        if stage.section not in sections:
            sections[stage.section] = section_of(config, stage)
        enabled.append((stage, sections[stage.section]))
    return ChainPlan(enabled, needs_body, _shared_names(frozenset(stage.name for stage in stages)))


def build_chain(
    app: ASGIApp,
    route: CompiledRoute,
    runtime: GuardRuntime,
    stages: Sequence[StageType],
    factory: Factory | None = None,
    plan: ChainPlan | None = None,
) -> tuple[ASGIApp, bool]:
    """The route's chain of enabled stages around `app` (outermost first in `stages`), and whether
    any stage needs the request body. Each stage gets its own section and the route's `RouteInfo`.

    `factory(stage, app, info, runtime)` builds one stage (a tracing probe wraps them); default:
    the stage class itself. `plan`: the route's `plan_chain` when the caller has it already.
    """
    if plan is None:
        plan = plan_chain(route, runtime, stages)
    base = route_info(route, plan.names)
    make: Factory = factory or _construct
    bases: dict[StageType, RouteInfo[Any]] = {}
    current = base
    for stage, _ in plan.enabled:  # stages inside one that does background work may exempt its contexts
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

    return wrap(app, plan.enabled), plan.needs_body


def _construct(stage: StageType, inner: ASGIApp, info: RouteInfo[Any], runtime: GuardRuntime) -> ASGIApp:
    return stage(inner, info, runtime)


def declare_chain(route: CompiledRoute, runtime: GuardRuntime, plan: ChainPlan) -> None:
    """Run `Stage.declare` of each planned stage that has one (a chain not built at start-up)."""
    for stage, section in plan.enabled:
        if _overrides(stage, "declare"):
            stage.declare(route_info(route, plan.names, section), runtime)


def route_key(route: CompiledRoute) -> Hashable:
    """The route settings a stage's construction may depend on (`RouteInfo` without the route's
    names): with `Stage.validation_key`, what the start-up check compares."""
    config = route.config
    return (
        route.methods,
        config.resource_id_field,
        config.resource_id_from_body,
        config.handler_timeout,
        section_key(config.pooling),
        section_key(config.exempt),
    )


def _identity(value: Any) -> str:
    """What the JSON key holds for a value JSON cannot (a hook given as a callable): its identity (the
    config keeps it alive, so the id is not reused while it matters)."""
    return f"\x00{type(value).__qualname__}@{id(value):x}"


def section_key(value: Any) -> Hashable:
    """A hashable key equal for equal config values (pydantic models, lists, dicts, sets, scalars).

    A model is keyed by its class and the JSON form of the fields set (pydantic-core's serializer:
    ~1.8 us for a cache section, several times faster than walking its fields here; the config
    models have no secret or excluded fields, so the JSON holds every setting made; a callable,
    such as a hook, by its identity). Numbers carry their type (`True`,
    `1` and `1.0` compare equal in Python, not as settings); a value of any other unhashable kind
    is keyed by its identity (never shared, never wrong)."""
    kind = type(value)
    if kind is str or value is None:
        return value  # type: ignore[no-any-return]
    if kind in (int, float, bool):
        return (kind, value)
    if isinstance(value, BaseModel):  # the serializer itself: `model_dump_json`'s wrapper is a third
        # only the fields set (the defaults are static: no factory but empty containers), about half
        # the time of the full form; equal sections written differently only get two keys
        return (kind, kind.__pydantic_serializer__.to_json(value, fallback=_identity, exclude_unset=True))
    if kind in (list, tuple):
        return (kind, tuple(section_key(v) for v in value))
    if isinstance(value, dict):
        return (dict, tuple((section_key(k), section_key(v)) for k, v in value.items()))
    if isinstance(value, (set, frozenset)):
        return (frozenset, frozenset(section_key(v) for v in value))
    try:
        hash(value)
    except TypeError:
        return ("id", id(value))
    return (kind, value)


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


_OVERRIDDEN: dict[tuple[StageType, str], bool] = {}


def _overrides(stage: StageType, method: str) -> bool:
    """Whether `stage` has its own `method` (a class method of Stage): the base answers without
    asking (planning 10,000 routes asks each stage a few such questions)."""
    found = _OVERRIDDEN.get((stage, method))
    if found is None:
        own = getattr(getattr(stage, method), "__func__", None)  # None: not a class method: its own
        found = _OVERRIDDEN[(stage, method)] = own is not getattr(Stage, method).__func__
    return found


def _reorder(enabled: list[tuple[StageType, Any]]) -> list[tuple[StageType, Any]]:
    """Move each stage that asks to (`runs_before`) just outside the stage it names, if present."""
    for stage, section in list(enabled):
        if not _overrides(stage, "runs_before"):
            continue
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
