"""The console's HTML: one page, inline CSS and JS, nothing fetched from elsewhere (works offline).

The markup, style and script live beside this module in `assets/` (package data) and are inlined
into each response. Server-rendered: the route policies (they do not change while the app runs).
Filled by the script, once a second from `api/summary`: every live number. The script writes text
only (`textContent`, never `innerHTML`): limited keys carry client-chosen strings (JWT subjects,
resource ids).
"""

from __future__ import annotations

from functools import cache
from html import escape
from importlib.resources import files
from typing import Any


@cache
def _asset(name: str) -> str:
    text = files(__package__).joinpath("assets", name).read_text(encoding="utf-8")
    return text.replace("/*STYLE*/", _style()) if name.endswith(".html") else text


@cache
def _style() -> str:
    return files(__package__).joinpath("assets", "console.css").read_text(encoding="utf-8")


def _limits(row: dict[str, Any]) -> str:
    parts = []
    for limit in row.get("limits", ()):
        parts.append(f"{limit['algo']} <code>{escape(limit['summary'] or str(limit['quota']))}</code>")
    if row.get("shadow"):
        parts.append("shadow")
    if "cache" in row:
        cache = row["cache"]
        parts.append(f"cache {escape(cache['algo'])} {cache['ttl_s']}s{' shared' if cache['shared'] else ''}")
    if "credits" in row:
        parts.append(f"{row['credits']['cost']} {escape(row['credits']['type'])} credits")
    if "circuit_breaker" in row:
        cb = row["circuit_breaker"]
        parts.append(f"breaker {cb['threshold']} fails / {cb['timeout_s']}s")
    if "events" in row:
        parts.append(f"events {escape(row['events']['mode'])} <code>{escape(row['events']['topic'])}</code>")
    if "auth" in row:
        parts.append(f"auth {escape(str(row['auth']))}")
    return "; ".join(parts) or '<span class="muted">-</span>'


def render_page(routes: list[dict[str, Any]]) -> str:
    """The console page with `routes` (from `summary.policies`) in its policy table."""
    policy_rows = (
        "".join(
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>".format(
                escape(row["template"]),
                escape(",".join(row["methods"])),
                escape(" ".join(s for s in row["stages"] if s != "telemetry")),
                _limits(row),
            )
            for row in routes
        )
        or '<tr><td colspan="4" class="muted">no registered routes</td></tr>'
    )
    page = _asset("page.html").replace("/*SCRIPT*/", _asset("console.js"))
    return page.replace("<!--POLICY_ROWS-->", policy_rows)


def render_login(error: str = "") -> str:
    """The sign-in form, with `error` (escaped) above it."""
    message = f'<p class="open">{escape(error)}</p>' if error else ""
    return _asset("login.html").replace("<!--MESSAGE-->", message)
