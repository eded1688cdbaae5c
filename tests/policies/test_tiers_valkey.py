"""Two tiers under one route, exact counts on real Valkey from two OS processes (standalone, cluster).

Each process fires 20 requests as a free principal (7 per window) and 20 as a pro one (23) at once;
together exactly 7 free and 23 pro pass, and every response names its tier's policy.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("_tier_worker.py")
REQUESTS = 20


@pytest.mark.valkey
@pytest.mark.parametrize("where", ["standalone", "cluster"])
def test_two_tiers_exact_across_two_processes(where: str, key_prefix: str, tmp_path, request) -> None:  # type: ignore[no-untyped-def]
    url = request.getfixturevalue("valkey_url" if where == "standalone" else "valkey_cluster_url")
    args = [sys.executable, str(WORKER), url, key_prefix, str(REQUESTS), str(tmp_path)]
    procs = [
        subprocess.Popen([*args, str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert results[0]["free"] + results[1]["free"] == 7, results
    assert results[0]["pro"] + results[1]["pro"] == 23, results
    assert results[0]["other"] + results[1]["other"] == 0, results
    for result in results:
        assert result["policies"] == ['"free";q=7;w=1000000000', '"pro";q=23;w=1000000000'], result
