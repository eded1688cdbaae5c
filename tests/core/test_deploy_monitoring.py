"""deploy/: the Grafana dashboard and the Prometheus alert rules.

Always: both files parse, every expression names only metrics asgi-guard defines (with the right
suffix for the kind), every alert has a severity and a summary, the dashboard's panels are sound.
With promtool (CI installs it from Debian's `prometheus` package; set ASGI_GUARD_REQUIRE_PROMTOOL=1 to
fail instead of skipping): `promtool check rules`, the rules' unit tests, and every dashboard query
parsed as PromQL.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from asgi_guard.core.metrics import get_metrics

ROOT = Path(__file__).parents[2]
RULES = ROOT / "deploy" / "prometheus" / "asgi-guard-alerts.yml"
RULES_TEST = ROOT / "deploy" / "prometheus" / "asgi-guard-alerts.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "asgi-guard-dashboard.json"
METRIC = re.compile(r"\basgi_guard_[a-z0-9_]+")
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}


def defined_series() -> set[str]:
    """Every series name the package's collectors expose (counter `_total`, histogram `_bucket`...)."""
    names: set[str] = set()
    for collector in vars(get_metrics()).values():
        for family in collector.describe():
            names.update(family.name + suffix for suffix in SUFFIXES[family.type])
    return names


def rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    data = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in data["panels"] for t in p.get("targets", [])]


def test_every_expression_uses_defined_metrics() -> None:
    known = defined_series()
    assert {"asgi_guard_requests_total", "asgi_guard_circuit_state", "asgi_guard_outbox_oldest_age_seconds",
            "asgi_guard_request_duration_seconds_bucket"} <= known
    exprs = [rule["expr"] for rule in rules()] + dashboard_exprs()
    templating = json.loads(DASHBOARD.read_text())["templating"]["list"]
    exprs += [v["definition"] for v in templating if v["type"] == "query"]
    for expr in exprs:
        used = set(METRIC.findall(expr))
        assert used, f"no asgi-guard metric in {expr!r}"
        assert used <= known, f"{expr!r} names undefined series {sorted(used - known)}"


def test_alerts_cover_the_issue_and_are_annotated() -> None:
    alerts = {rule["alert"]: rule for rule in rules()}
    assert {"AsgiGuardCircuitOpen", "AsgiGuardOutboxBacklog", "AsgiGuardBackendUnavailable",
            "AsgiGuardHighRateLimitedRatio", "AsgiGuardHigh5xxRatio", "AsgiGuardHighLatencyP99"} <= set(alerts)
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "")), f"{name}: give it a `for:` to avoid flapping"
    assert "histogram_quantile(0.99" in alerts["AsgiGuardHighLatencyP99"]["expr"]
    assert "by (route" in alerts["AsgiGuardHighLatencyP99"]["expr"]


def test_dashboard_is_sound() -> None:
    data = json.loads(DASHBOARD.read_text())
    assert data["uid"] == "asgi-guard" and data["schemaVersion"] >= 36 and data["title"]
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"] for v in data["templating"]["list"]}
    assert variables == {"datasource", "route"}
    for panel in data["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert ref_ids and len(ref_ids) == len(set(ref_ids)), panel["title"]
    titles = " ".join(p["title"] for p in data["panels"]).lower()
    for topic in ("429", "5xx", "p99", "circuit", "outbox", "backend", "cache", "rejections"):
        assert topic in titles, topic


def promtool() -> str:
    found = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if found is None:
        if os.environ.get("ASGI_GUARD_REQUIRE_PROMTOOL"):
            pytest.fail("promtool is required here (ASGI_GUARD_REQUIRE_PROMTOOL) but not installed")
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    return found


def test_promtool_checks_and_unit_tests_the_rules() -> None:
    tool = promtool()
    check = subprocess.run([tool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    unit = subprocess.run(
        [tool, "test", "rules", RULES_TEST.name], capture_output=True, text=True, timeout=60, cwd=RULES_TEST.parent
    )
    assert unit.returncode == 0 and "SUCCESS" in unit.stdout, unit.stdout + unit.stderr


def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    """Each panel query, with Grafana's variables filled in, as a recording rule promtool parses."""
    tool = promtool()
    records = [
        {"record": f"asgi_guard_dashboard:q{i}",
         "expr": expr.replace("$__rate_interval", "5m").replace("$route", ".*")}
        for i, expr in enumerate(dashboard_exprs())
    ]
    file = tmp_path / "dashboard-queries.yml"
    file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    check = subprocess.run([tool, "check", "rules", str(file)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
