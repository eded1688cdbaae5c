"""Replaced by overhead.py (the old comparison used a sync `def` JWT dependency for the peer, installed
no tracer provider and, on Valkey, left fastapi-cache2 on its first in-memory backend).

Kept as an alias: `python benchmarks/stack_bench.py [args]` runs `benchmarks/overhead.py [args]`.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

if __name__ == "__main__":
    target = Path(__file__).resolve().with_name("overhead.py")
    sys.argv[0] = str(target)
    runpy.run_path(str(target), run_name="__main__")
