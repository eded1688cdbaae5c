"""`asgi-guard` command: demo, routes, check, services, credits, worker."""

from __future__ import annotations

import argparse
import importlib
import os
import runpy
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from asgi_guard.core.errors import ConfigError
from asgi_guard.registry import RouteRegistry

Handler = Callable[[argparse.Namespace], int]


def _policy_summary(registry: RouteRegistry) -> list[tuple[str, str, str, str]]:
    from asgi_guard.core.stage import section_of
    from asgi_guard.stages import load_stages

    rows = []
    for route in registry:
        config = route.config
        stages = [
            stage.name
            for stage in load_stages()
            if stage.name != "telemetry" and stage.enabled_for(section_of(config, stage))
        ]
        methods = ",".join(sorted(route.methods - {"HEAD"} if route.methods != {"HEAD"} else route.methods))
        details = []
        if config.rate_limit.enabled:
            details.append(f"rate_limit={config.rate_limit.algo.value}")
        if config.cache.enabled:
            details.append(f"cache={config.cache.algo.value}/{config.cache.default.cache_ttl}s")
        if config.required_credits:
            details.append(f"credits={config.required_credits} {config.credit_type}")
        if config.security.auth_type_required:
            details.append(f"auth={config.security.auth_type_required}")
        rows.append(
            (
                route.name,
                methods,
                route.template,
                " ".join(stages) + ("  " if details else "") + ", ".join(details),
            )
        )
    return rows


def _cmd_routes(args: argparse.Namespace) -> int:
    try:
        registry = RouteRegistry.from_file(args.file)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    rows = [("NAME", "METHODS", "PATH", "STAGES / POLICY"), *_policy_summary(registry)]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3])
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    try:
        registry = RouteRegistry.from_file(args.file)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"ok: {len(registry)} routes in {args.file}")
    return 0


def _cmd_services(args: argparse.Namespace) -> int:
    if args.service in ("valkey", "valkey-cluster"):
        from asgi_guard_dev import valkey

        if args.action == "up":
            url = valkey.up(args.service)
            print(f"{args.service} is up: export ASGI_GUARD_VALKEY_URL={url}")
        elif valkey.down(args.service):
            print(f"{args.service} stopped")
        else:
            print(f"{args.service} was not running")
        return 0
    from asgi_guard_dev import pulsar  # type: ignore[attr-defined,unused-ignore]

    if args.action == "up":
        print(f"pulsar is up: export ASGI_GUARD_PULSAR_URL={pulsar.up()}")
    else:
        print("pulsar stopped" if pulsar.down() else "pulsar was not running")
    return 0


def _example_file(name: str) -> Path:
    for base in (Path.cwd(), Path(__file__).resolve().parents[1]):
        candidate = base / "examples" / name
        if candidate.exists():
            return candidate
    raise SystemExit(f"examples/{name} not found: run from a checkout of asgi-guard")


def _cmd_demo(args: argparse.Namespace) -> int:
    os.environ.setdefault("ASGI_GUARD_DEMO_HOST", args.host)
    os.environ["ASGI_GUARD_DEMO_PORT"] = str(args.port)
    module = runpy.run_path(str(_example_file("fastapi_app.py")), run_name="asgi_guard_demo")
    module["serve"](args.host, args.port)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asgi-guard", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="serve examples/fastapi_app.py on 127.0.0.1 (embedded backend)")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.set_defaults(handler=_cmd_demo)

    routes = sub.add_parser("routes", help="print each route's effective policy")
    routes.add_argument("file")
    routes.set_defaults(handler=_cmd_routes)

    check = sub.add_parser("check", help="validate a routes TOML file (exit 1 with the messages)")
    check.add_argument("file")
    check.set_defaults(handler=_cmd_check)

    services = sub.add_parser("services", help="run local dev services (valkey, valkey-cluster, pulsar)")
    services.add_argument("action", choices=["up", "down"])
    services.add_argument("service", choices=["valkey", "valkey-cluster", "pulsar"])
    services.set_defaults(handler=_cmd_services)

    for module_name in ("asgi_guard.stages.credits.cli", "asgi_guard.stages.events.cli"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
