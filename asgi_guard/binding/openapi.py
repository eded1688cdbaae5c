"""OpenAPI for FastAPI apps: each guarded operation's security scheme and problem responses.

FastAPI's documented way to extend the schema is to replace `app.openapi` with a function that
post-processes the generated document; this does that, from the bound policies, so Swagger UI's
Authorize button works and schema-driven clients know every answer the guard may give.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from asgi_guard.registry import CompiledRoute, path_format

if TYPE_CHECKING:
    from asgi_guard.stack import Guard

SCHEME = "asgiGuardBearer"
MARK = "x-asgi-guard-documented"
PROBLEM = "application/problem+json"
_TITLES = {
    400: "Bad Request (malformed Authorization header, body or encrypted field)",
    401: "Unauthorized (missing, invalid or expired token; missing second factor)",
    402: "Payment Required (not enough credits)",
    403: "Forbidden (scope, role or client address not allowed)",
    409: "Conflict (a request with this Idempotency-Key is in flight)",
    413: "Content Too Large (request body over the route's limit)",
    422: "Unprocessable Content (Idempotency-Key reused with another body)",
    429: "Too Many Requests (rate limit exceeded)",
    500: "Internal Server Error",
    503: "Service Unavailable (open circuit, or a backend that cannot be reached)",
    408: "Request Timeout (the request body did not arrive within the handler time-out)",
    504: "Gateway Timeout (the handler did not answer in time)",
}
_HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-ID": {"description": "the request id (echoed, or generated)", "schema": {"type": "string"}},
    "RateLimit": {
        "description": "remaining quota (IETF draft-ietf-httpapi-ratelimit-headers)",
        "schema": {"type": "string"},
    },
    "RateLimit-Policy": {"description": "the route's quota policies", "schema": {"type": "string"}},
    "Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}},
    "X-Credits-Remaining": {"description": "credits left after this request", "schema": {"type": "integer"}},
    "WWW-Authenticate": {"description": "RFC 6750 Bearer challenge", "schema": {"type": "string"}},
}
_PROBLEM_SCHEMA = {
    "title": "Problem",
    "description": "RFC 9457 problem details",
    "type": "object",
    "properties": {
        "type": {"type": "string", "format": "uri-reference"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "request_id": {"type": "string"},
    },
    "required": ["type", "title", "status"],
}


def statuses(route: CompiledRoute) -> dict[int, list[str]]:
    """The problem statuses a route can answer, with the headers each carries."""
    config = route.config
    sec = config.security
    out: dict[int, list[str]] = {500: []}
    token = bool(sec.auth_type_required)
    if token:
        out[400] = []
        out[401] = ["WWW-Authenticate"]
        out[403] = ["WWW-Authenticate"]
        out[503] = ["Retry-After"]
        if sec.mfa_required:
            out[429] = ["Retry-After"]
    if sec.ip_whitelist_enabled:
        out[403] = out.get(403, [])
    if config.rate_limit.enabled:
        out[429] = ["Retry-After", "RateLimit", "RateLimit-Policy"]
        if not config.rate_limit.fail_open:
            out.setdefault(503, ["Retry-After"])
    if config.idempotency.enabled:
        out[409] = []
        out[422] = []
        out[400] = []
    if config.required_credits:
        out[402] = ["X-Credits-Remaining"]
        out.setdefault(503, ["Retry-After"])
    if config.circuit_breaker.enabled:
        out[503] = ["Retry-After"]
    if config.handler_timeout is not None:
        out[408] = []
        out[504] = []
    if config.encryption.enable_encryption or config.encryption.enable_decryption:
        out[400] = []
    if config.resource_id_from_body or config.encryption.enable_encryption or config.idempotency.enabled:
        out[413] = []
        out[400] = []
    return dict(sorted(out.items()))


def annotate(schema: dict[str, Any], guard: Guard) -> dict[str, Any]:
    """Add the guard's security scheme and problem responses to a FastAPI OpenAPI document (in place)."""
    if schema.get(MARK):
        return schema
    components = schema.setdefault("components", {})
    schemes = components.setdefault("securitySchemes", {})
    components.setdefault("schemas", {})["Problem"] = _PROBLEM_SCHEMA
    paths = schema.get("paths", {})
    used_scheme = False
    for plan in guard.bindings:
        leaf = plan.leaf
        if not leaf.in_schema or leaf.template is None:
            continue
        item = paths.get(path_format(leaf.template))
        if not item:
            continue
        for method, operation in item.items():
            if leaf.methods is not None and method.upper() not in leaf.methods:
                continue  # another route at the same path serves it (its own plan annotates it)
            route = plan.by_method.get(method.upper(), plan.any)
            if route is None or not isinstance(operation, dict):
                continue
            used_scheme |= _operation(operation, route)
    if used_scheme:
        schemes[SCHEME] = {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "asgi-guard: a Bearer JWT (RFC 6750) verified with the app's keys",
        }
    schema[MARK] = True
    return schema


def _operation(operation: dict[str, Any], route: CompiledRoute) -> bool:
    config = route.config
    sec = config.security
    token = bool(sec.auth_type_required)
    if token:
        scopes = sorted(sec.required_scopes)
        operation.setdefault("security", []).append({SCHEME: scopes})
    responses = operation.setdefault("responses", {})
    for status, headers in statuses(route).items():
        entry = responses.setdefault(str(status), {"description": _TITLES[status]})
        entry.setdefault("content", {})[PROBLEM] = {"schema": {"$ref": "#/components/schemas/Problem"}}
        entry.setdefault("headers", {}).update({h: _HEADERS[h] for h in ("X-Request-ID", *headers)})
    success = [h for h in ("RateLimit", "RateLimit-Policy") if config.rate_limit.enabled]
    if config.required_credits:
        success.append("X-Credits-Remaining")
    for status, entry in responses.items():
        if status.startswith("2") and isinstance(entry, dict):
            entry.setdefault("headers", {}).update({h: _HEADERS[h] for h in ("X-Request-ID", *success)})
    extra = {
        "scopes": sorted(sec.required_scopes),
        "roles": list(sec.permission_roles_required),
        "mfa": sec.mfa_required,
        "required_credits": config.required_credits,
        "rate_limited": config.rate_limit.enabled,
    }
    operation["x-asgi-guard"] = extra
    return token


def document(app: Any, guard: Guard) -> None:
    """Wrap `app.openapi` (FastAPI's documented extension point) to annotate its document."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        guard.rebind_if_changed()
        schema: dict[str, Any] = original()
        return annotate(schema, guard)

    app.openapi = openapi
