"""Route resolution cost with 10, 100 and 1,000 registered routes: the matcher must stay flat.

Run: python benchmarks/registry_bench.py
"""

from __future__ import annotations

import time

from asgi_guard import JobConfig, RouteRegistry

CONFIG = JobConfig()


def build(n: int) -> RouteRegistry:
    registry = RouteRegistry()
    for i in range(n):
        registry.register(f"/svc{i}/items/{{item_id:int}}", CONFIG, methods=["GET"])
        registry.register(f"/svc{i}/static", CONFIG, methods=["GET"])
    return registry


def per_lookup_ns(registry: RouteRegistry, paths: list[str], rounds: int = 200_000) -> float:
    match = registry.match
    start = time.perf_counter()
    for i in range(rounds):
        match("GET", paths[i % len(paths)])
    return (time.perf_counter() - start) / rounds * 1e9


def main() -> None:
    print("| routes | dynamic, hot path (ns) | dynamic, uncached (ns) | static (ns) | miss (ns) |")
    print("|---:|---:|---:|---:|---:|")
    for n in (10, 100, 1000):
        registry = build(n)
        dynamic = [f"/svc{i}/items/{i}" for i in range(0, n, max(1, n // 10))]
        static = [f"/svc{i}/static" for i in range(0, n, max(1, n // 10))]
        miss = ["/nowhere/at/all", f"/svc{n + 5}/items/1"]
        # 20,000 distinct paths cycle through the bounded hot-path cache, so most lookups walk the trie
        cold = [f"/svc{i % n}/items/{i}" for i in range(20_000)]
        print(
            f"| {2 * n} | {per_lookup_ns(registry, dynamic):.0f} | {per_lookup_ns(registry, cold):.0f} "
            f"| {per_lookup_ns(registry, static):.0f} "
            f"| {per_lookup_ns(registry, miss):.0f} |"
        )


if __name__ == "__main__":
    main()
