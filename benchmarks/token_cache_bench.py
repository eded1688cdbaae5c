"""Memory per entry of the verified-token cache (asgi_guard.stages.security.jwt.TokenVerifier).

Verifies N distinct HS256 tokens (one per user: `sub`, `exp`, `iat`, `scope`, `roles`, as an identity
provider issues them) and reports the traced memory the cache holds per entry (tracemalloc: the
digest key, the entry, the Principal and its claims dict; scope/role sets are shared between users).

Run:  python benchmarks/token_cache_bench.py [--users 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import time
import tracemalloc

import jwt

from asgi_guard import GuardSettings
from asgi_guard.stages.security.jwt import TokenVerifier

SECRET = "s" * 32


async def run(users: int) -> dict[str, float | int]:
    settings = GuardSettings(_env_file=None, jwt_secret=SECRET)  # type: ignore[call-arg]
    verifier = TokenVerifier(settings, None, cache_size=users)
    now = int(time.time())
    tokens = [
        jwt.encode(
            {"sub": f"user-{i:07d}", "iat": now, "exp": now + 300, "scope": "items:read", "roles": ["user"]},
            SECRET,
            algorithm="HS256",
        )
        for i in range(users)
    ]
    await verifier.verify(tokens[0])  # shared sets and interned names exist before measuring
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for token in tokens[1:]:
        await verifier.verify(token)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    entries = len(verifier._cache) - 1
    return {
        "users": users,
        "entries": entries,
        "cache_mib": round((after - before) / 2**20, 1),
        "bytes_per_entry": (after - before) // max(entries, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=100_000)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.users))))


if __name__ == "__main__":
    main()
