"""Exactness across processes: two OS processes fire concurrent requests through the stack at one
shared Valkey (standalone, then the 3-node cluster); exactly N requests are allowed, every round."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("_rl_exact_worker.py")
# per round each process sends 2 x 20 (all of a half at once): 80 try, 25 may pass, and since a half
# (20) is below the limit, each process must see some allowed and some rejected
LIMIT, REQUESTS, ROUNDS = 25, 40, 3


@pytest.mark.valkey
@pytest.mark.parametrize("where", ["standalone", "cluster"])
def test_exactly_n_allowed_across_two_processes(where: str, key_prefix: str, tmp_path, request) -> None:  # type: ignore[no-untyped-def]
    url = request.getfixturevalue("valkey_url" if where == "standalone" else "valkey_cluster_url")
    args = [
        sys.executable,
        str(WORKER),
        url,
        key_prefix,
        str(LIMIT),
        str(REQUESTS),
        str(ROUNDS),
        str(tmp_path),
    ]
    procs = [
        subprocess.Popen([*args, str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    for algo in ("token_bucket", "fixed_window"):
        per_round = [a + b for a, b in zip(results[0][algo], results[1][algo], strict=True)]
        assert per_round == [LIMIT] * ROUNDS, (algo, results)
        # both processes really competed for the same quota in every round
        assert all(0 < a < LIMIT for a in results[0][algo] + results[1][algo]), (algo, results)
    assert sum(results[0]["other"] + results[1]["other"]) == 0  # no 5xx
