"""RouteRegistry: route templates (Starlette syntax) mapped to JobConfig, with a compiled matcher.

For Starlette and FastAPI apps the registry is only a declaration: at start-up every entry is bound to
the app's own route object with the same template (`asgi_guard.binding`), and the app's router picks
the route. The matcher below serves `registry.resolve()` and the fallback for bare ASGI apps without a
Starlette router: it walks a segment trie (static segments are dict lookups, so the cost depends on
the depth of the path, not on the number of routes); static segments win over dynamic ones.
"""

from __future__ import annotations

import re
import sys
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from starlette.convertors import CONVERTOR_TYPES, Convertor

from asgi_guard.config import JobConfig
from asgi_guard.core.errors import ConfigError

ALL_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
ANY = "*"  # the slot of a route registered without `methods`: every method, QUERY and others included
HOT_PATHS = 4096  # recently matched (method, path) pairs kept; cleared whole when full (bounded)
_MISS = object()
_PARAM = re.compile(r"{([a-zA-Z_][a-zA-Z0-9_]*)(?::([a-zA-Z_][a-zA-Z0-9_]*))?}")


@dataclass(eq=False, slots=True, weakref_slot=True)
class CompiledRoute:
    """One registered route: its template, methods and validated, frozen config."""

    template: str
    methods: frozenset[str]
    config: JobConfig
    name: str
    any_method: bool = False  # registered without `methods`: every method, not only ALL_METHODS

    @property
    def label(self) -> str:
        """What metrics, spans and keys call this route."""
        return self.config.endpoint_name or self.name


@dataclass
class _Pattern:
    regex: re.Pattern[str]
    convertors: dict[str, Convertor[Any]]
    whole_str: str | None = None  # "{name}" alone in its segment: any non-empty segment, no regex


@dataclass
class _Node:
    static: dict[str, _Node] = field(default_factory=dict)
    dynamic: list[tuple[_Pattern, _Node]] = field(default_factory=list)
    rest: list[tuple[str, str, _Node]] = field(default_factory=list)  # (prefix, param, leaf) of {x:path}
    routes: dict[str, CompiledRoute] = field(default_factory=dict)


def _segment_regex(segment: str, template: str) -> str:
    """The anchored regex of one dynamic segment (not compiled: compiling waits for the matcher)."""
    regex, pos = "^", 0
    for match in _PARAM.finditer(segment):
        name, kind = match.group(1), match.group(2) or "str"
        if kind not in CONVERTOR_TYPES:
            raise ConfigError(f"route {template!r}: unknown path convertor {kind!r}")
        regex += re.escape(segment[pos : match.start()]) + f"(?P<{name}>{CONVERTOR_TYPES[kind].regex})"
        pos = match.end()
    return regex + re.escape(segment[pos:]) + "$"


def _compile_segment(segment: str, template: str) -> _Pattern:
    regex = _segment_regex(segment, template)
    convertors = {m.group(1): CONVERTOR_TYPES[m.group(2) or "str"] for m in _PARAM.finditer(segment)}
    whole = _PARAM.fullmatch(segment)
    simple = whole.group(1) if whole and (whole.group(2) or "str") == "str" else None
    return _Pattern(re.compile(regex), convertors, simple)


def _template_key(template: str) -> str:
    """What makes two dynamic templates one matcher leaf (the trie's own rule): static segments as
    written, dynamic ones by their regex, a trailing `{name:path}` by its prefix and name.
    ConfigError when a `{name:path}` is misplaced or a convertor unknown. Checked at registration;
    the trie waits for the first match."""
    segments = template.strip("/").split("/")
    last = len(segments) - 1
    for index, segment in enumerate(segments):
        if "{" not in segment:
            continue
        if ":path}" in segment:
            if index != last or not segment.endswith(":path}"):
                raise ConfigError(f"route {template!r}: a {{name:path}} parameter must end the template")
            segments[index] = "\x00path:" + segment  # a prefix and a name, as written
        else:
            segments[index] = "\x00" + _segment_regex(segment, template)
    return "/".join(segments)


_METHOD_SETS: dict[frozenset[str], frozenset[str]] = {}


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 section 5.6.2: a method is a token


def _methods(methods: Iterable[str] | None, path: str) -> frozenset[str]:
    """The route's methods (HEAD with GET), one shared object per distinct set (a frozenset is
    ~200 bytes: 10,000 routes share a handful). ConfigError for a method that is not a token
    (RFC 9110 section 9.1), such as "GET POST": no request would match it, so the policy would
    guard nothing."""
    if isinstance(methods, str):
        raise ConfigError(f"route {path!r}: methods is a list, such as [{methods!r}], not a string")
    if not methods:
        return ALL_METHODS
    for method in methods:
        if not isinstance(method, str) or not _TOKEN.fullmatch(method):
            raise ConfigError(f"route {path!r}: {method!r} is not an HTTP method (RFC 9110: a token)")
    upper = {sys.intern(m.upper()) for m in methods}
    if "GET" in upper:
        upper.add("HEAD")
    found = frozenset(upper)
    if len(_METHOD_SETS) < 1024:
        return _METHOD_SETS.setdefault(found, found)
    return found


def _table(route: CompiledRoute) -> dict[str, CompiledRoute]:
    """A route's method table: what `RouteRegistry._claim` makes of it in an empty slot."""
    return dict.fromkeys((ANY,) if route.any_method else route.methods, route)


class RouteRegistry:
    """Maps (method, path) to the route's JobConfig and path parameters."""

    def __init__(self) -> None:
        # The segment trie is built on the first `match` (bare ASGI apps, `resolve`): an app bound
        # to its own router never needs it (10,000 routes: ~20 MiB and 0.2 s saved at start-up).
        self._root: _Node | None = None
        self._static: dict[str, dict[str, CompiledRoute]] = {}
        # template key -> method -> route; a key with one route holds that route alone (its methods
        # are its table: 10,000 routes, ~2 MiB of two-entry dicts saved), made a table when needed
        self._dynamic: dict[str, CompiledRoute | dict[str, CompiledRoute]] = {}
        self._routes: list[CompiledRoute] = []
        self._frozen = False
        self._hot: dict[tuple[str, str], tuple[CompiledRoute, dict[str, Any]] | None] = {}

    # -- registration ---------------------------------------------------------------------------
    def register(
        self,
        path: str,
        config: JobConfig | Mapping[str, Any] | None = None,
        methods: Iterable[str] | None = None,
        *,
        name: str | None = None,
    ) -> CompiledRoute:
        """Register `path` (Starlette template syntax) for `methods` (default: all)."""
        if self._frozen:
            raise ConfigError(f"route {path!r}: the registry is frozen once the app has started")
        if not path.startswith("/"):
            raise ConfigError(f"route {path!r}: a path template must start with '/'")
        route_name = name or path
        job = _validate(route_name, path, config)
        route = CompiledRoute(path, _methods(methods, path), job, route_name, not methods)
        if "{" not in path:
            self._claim(self._static.setdefault(path, {}), route)
        else:
            key = _template_key(path)
            found = self._dynamic.get(key)
            if found is None:
                self._dynamic[key] = route
            else:
                if not isinstance(found, dict):
                    found = self._dynamic[key] = _table(found)
                self._claim(found, route)
        self._routes.append(route)
        self._root = None  # rebuilt on the next match
        self._hot.clear()
        return route

    def _trie(self) -> _Node:
        """The matcher's segment trie (built once, after the last registration)."""
        root = _Node()
        for found in self._dynamic.values():
            slot = found if isinstance(found, dict) else _table(found)
            self._insert(root, next(iter(slot.values())).template).routes = slot
        self._root = root
        return root

    def _claim(self, slot: dict[str, CompiledRoute], route: CompiledRoute) -> None:
        """Give `route` its methods in `slot`, all or none: a refused registration (ConfigError)
        leaves no method of it behind for the matcher (the app may go on: `collect_errors`)."""
        claims = (ANY,) if route.any_method else route.methods
        for method in claims:
            if method in slot and not (method == "HEAD" and slot[method].methods != route.methods):
                raise ConfigError(f"route {route.template!r}: {method} is already registered")
        for method in claims:
            slot[method] = route

    def _insert(self, root: _Node, template: str) -> _Node:
        node = root
        segments = template.strip("/").split("/")
        for index, segment in enumerate(segments):
            if "{" not in segment:
                node = node.static.setdefault(segment, _Node())
                continue
            if ":path}" in segment:
                if index != len(segments) - 1 or not segment.endswith(":path}"):
                    raise ConfigError(f"route {template!r}: a {{name:path}} parameter must end the template")
                prefix, _, _ = segment.partition("{")
                param = _PARAM.search(segment)
                assert param is not None
                for existing_prefix, existing_name, leaf in node.rest:
                    if (existing_prefix, existing_name) == (prefix, param.group(1)):
                        return leaf  # the same template again (other methods): one leaf
                leaf = _Node()
                node.rest.append((prefix, param.group(1), leaf))
                return leaf
            pattern = _compile_segment(segment, template)
            for existing, child in node.dynamic:
                if existing.regex.pattern == pattern.regex.pattern:
                    node = child
                    break
            else:
                child = _Node()
                node.dynamic.append((pattern, child))
                node = child
        return node

    def freeze(self) -> None:
        """No more registrations: called when the app starts serving."""
        self._frozen = True

    def compile_matcher(self) -> None:
        """Build the matcher now rather than on the first `match` (the guard does, at start-up, for
        bare ASGI apps, whose every request matches here)."""
        if self._root is None:
            self._trie()

    # -- lookup ---------------------------------------------------------------------------------
    def match(self, method: str, path: str) -> tuple[CompiledRoute, dict[str, Any]] | None:
        """The route and converted path parameters for this request, or None."""
        static = self._static.get(path)
        if static is not None:
            route = static.get(method) or static.get(ANY)
            if route is not None:
                return route, {}
        hot = self._hot.get((method, path), _MISS)
        if hot is not _MISS:
            return None if hot is None else (hot[0], dict(hot[1]))  # type: ignore[index]
        params: dict[str, Any] = {}
        root = self._root
        if root is None:
            root = self._trie()
        node = _walk(root, path.strip("/").split("/"), 0, params)
        route = (node.routes.get(method) or node.routes.get(ANY)) if node is not None else None
        found = (route, params) if route is not None else None
        if len(self._hot) >= HOT_PATHS:
            self._hot.clear()
        self._hot[(method, path)] = found
        return (found[0], dict(params)) if found is not None else None

    def resolve(self, method: str, path: str) -> tuple[JobConfig, dict[str, Any]] | None:
        """(JobConfig, path params) for the request, or None when the route is not registered."""
        found = self.match(method.upper(), path)
        return (found[0].config, found[1]) if found else None

    def __iter__(self) -> Iterator[CompiledRoute]:
        return iter(self._routes)

    def __len__(self) -> int:
        return len(self._routes)

    # -- files ----------------------------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | Path) -> RouteRegistry:
        """Load routes from TOML: `[bases.NAME]` tables and `[routes.NAME]` tables with `path`,
        `methods`, optional `extends` (a base or another route) and any JobConfig field."""
        file = Path(path)
        try:
            data = tomllib.loads(file.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{file}: {exc}") from exc
        return cls.from_mapping(data, source=str(file))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "<mapping>") -> RouteRegistry:
        """Build from parsed TOML; the first broken route raises ConfigError."""
        return cls._load(data, source, None)

    @classmethod
    def _load(
        cls, data: Mapping[str, Any], source: str, errors: list[tuple[str | None, str]] | None
    ) -> RouteRegistry:
        """Register every route; with `errors`, record each broken route there and go on."""
        bases: dict[str, Any] = dict(data.get("bases", {}))
        routes: dict[str, Any] = dict(data.get("routes", {}))
        registry = cls()
        unknown = set(data) - {"bases", "routes"}
        if unknown:
            problem = ConfigError(f"{source}: unknown top-level tables {sorted(unknown)}")
            if errors is None:
                raise problem
            errors.append((None, str(problem)))
        for route_name, table in routes.items():
            try:
                if not isinstance(table, Mapping):
                    raise ConfigError(f"{source}: route {route_name!r} must be a table")
                merged = _flatten_extends(route_name, bases, routes, source, ())
                merged = {k: v for k, v in merged.items() if k not in ("extends", "abstract")}
                route_path = merged.pop("path", None)
                route_methods = merged.pop("methods", None)
                if not isinstance(route_path, str):
                    raise ConfigError(f"{source}: route {route_name!r}: field 'path' is required")
                registry.register(route_path, merged, route_methods, name=route_name)
            except ConfigError as exc:
                if errors is None:
                    raise
                errors.append((route_name, str(exc)))
        return registry


_CONVERTOR = re.compile(r"{([a-zA-Z_][a-zA-Z0-9_]*)(?::[a-zA-Z_][a-zA-Z0-9_]*)?}")  # Starlette's PARAM_REGEX


def path_format(template: str) -> str:
    """A template without its convertors (`/a/{x:int}` -> `/a/{x}`): how routes are compared.

    Starlette's `compile_path(template)[1]`, without compiling the route's regex (binding 10,000
    routes asked for it twice per route: most of the start-up time). A template without a `:` has
    no convertor: it is its own format (the same string, no regex, nothing allocated)."""
    if ":" not in template:
        return template
    return _CONVERTOR.sub(r"{\1}", template)


def collect_errors(path: str | Path) -> tuple[RouteRegistry, list[tuple[str | None, str]]]:
    """Load a routes TOML file like `RouteRegistry.from_file`, but report every broken route.

    Returns the registry of the routes that loaded and a list of `(route name or None, message)`;
    an unreadable or unparsable file is one error with no route. Used by `asgi-guard check`.
    """
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        return RouteRegistry(), [(None, f"{file}: {exc}")]
    errors: list[tuple[str | None, str]] = []
    registry = RouteRegistry._load(data, str(file), errors)
    return registry, errors


def _walk(node: _Node, segments: list[str], index: int, params: dict[str, Any]) -> _Node | None:
    if index == len(segments):
        return node if node.routes else None
    segment = segments[index]
    child = node.static.get(segment)
    if child is not None:
        found = _walk(child, segments, index + 1, params)
        if found is not None:
            return found
    for pattern, dyn_child in node.dynamic:
        if pattern.whole_str is not None:
            if not segment:
                continue
            found = _walk(dyn_child, segments, index + 1, params)
            if found is not None:
                params[pattern.whole_str] = segment
                return found
            continue
        matched = pattern.regex.match(segment)
        if matched is None:
            continue
        found = _walk(dyn_child, segments, index + 1, params)
        if found is not None:
            for key, raw in matched.groupdict().items():
                params[key] = pattern.convertors[key].convert(raw)
            return found
    for prefix, name, leaf in node.rest:
        rest = "/".join(segments[index:])
        if rest.startswith(prefix):
            params[name] = rest[len(prefix) :]
            return leaf
    return None


def _deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _flatten_extends(
    name: str, bases: dict[str, Any], routes: dict[str, Any], source: str, seen: tuple[str, ...]
) -> dict[str, Any]:
    """The route's table with every ancestor deep-merged beneath it (child wins, lists replace)."""
    if name in seen:
        raise ConfigError(f"{source}: route {seen[0]!r}: `extends` cycle {' -> '.join((*seen, name))}")
    table = routes.get(name) if not seen else bases.get(name, routes.get(name))
    if not isinstance(table, Mapping):
        raise ConfigError(f"{source}: route {seen[0]!r}: extends unknown base {name!r}")
    parent = table.get("extends")
    if parent is None:
        return dict(table)
    inherited = _flatten_extends(str(parent), bases, routes, source, (*seen, name))
    inherited.pop("path", None)
    return _deep_merge(inherited, table)


def _validate(name: str, path: str, config: JobConfig | Mapping[str, Any] | None) -> JobConfig:
    if config is None:
        return JobConfig()
    if isinstance(config, JobConfig):
        return config
    try:
        return JobConfig.model_validate(config)
    except ValidationError as exc:
        problems = "; ".join(
            f"field {'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        label = f"{name!r} ({path})" if name != path else repr(path)
        raise ConfigError(f"route {label}: {problems}") from exc
