"""/metrics is opt-in: no endpoint and no counting by default, an app's own /metrics is never hidden,
`metrics_collect` counts for another exporter, and `metrics_labels` adds constant labels."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from telemetry_apps import SECRET, guarded, local_exposition, parse, sample, unique

from asgi_guard import GuardSettings, JobConfig

PATH = "/jobs/{resource_id}"


def plain(**extra: Any) -> GuardSettings:
    """The library defaults (no metrics_path), plus what the test names."""
    return GuardSettings(_env_file=None, jwt_secret=SECRET, jwt_algorithms=["HS256"], **extra)  # type: ignore[call-arg]


async def test_default_serves_no_metrics_and_counts_nothing(make_client: Any) -> None:
    route = unique("off_")
    client = make_client(guarded(PATH, JobConfig(endpoint_name=route), settings_=plain()))
    assert (await client.post("/jobs/1")).status_code == 200
    assert (await client.get("/metrics")).status_code == 404  # the app's own 404: no endpoint here
    assert f'route="{route}"' not in local_exposition()


async def test_app_metrics_endpoint_is_not_hidden(make_client: Any) -> None:
    """Another instrumentator's /metrics (here a plain route) answers, guard installed or not."""

    async def own_metrics(request: Any) -> PlainTextResponse:
        return PlainTextResponse("# the app's own exporter\n")

    app = guarded(PATH, JobConfig(endpoint_name=unique("own_")), settings_=plain())
    app.router.routes.append(Route("/metrics", own_metrics))
    response = await make_client(app).get("/metrics")
    assert response.status_code == 200 and response.text == "# the app's own exporter\n"


async def test_collect_counts_without_an_endpoint(make_client: Any) -> None:
    route = unique("collect_")
    client = make_client(guarded(PATH, JobConfig(endpoint_name=route), settings_=plain(metrics_collect=True)))
    assert (await client.post("/jobs/1")).status_code == 200
    assert (await client.get("/metrics")).status_code == 404
    families = parse(local_exposition())
    assert sample(families, "asgi_guard_requests_total", route=route, method="POST", status="200") == 1


async def test_constant_labels_on_every_sample(make_client: Any) -> None:
    route = unique("const_")
    labels = {"service": "billing", "env": "staging"}
    client = make_client(
        guarded(PATH, JobConfig(endpoint_name=route), settings_=plain(metrics_path="/metrics", metrics_labels=labels))
    )
    assert (await client.post("/jobs/1")).status_code == 200
    for accept in ("", "application/openmetrics-text; version=1.0.0"):
        response = await client.get("/metrics", headers={"accept": accept} if accept else {})
        assert response.status_code == 200
        if accept:
            from prometheus_client.openmetrics.parser import text_string_to_metric_families as om

            families = {f.name: list(f.samples) for f in om(response.text)}
        else:
            families = parse(response.text)
        every = [s for samples in families.values() for s in samples]
        assert every and all(s.labels["service"] == "billing" and s.labels["env"] == "staging" for s in every)
        assert sample(families, "asgi_guard_requests_total", route=route, service="billing") == 1
    assert 'service="billing"' not in local_exposition(), "the registry itself is not modified"


@pytest.mark.parametrize(
    "labels", [{"route": "x"}, {"le": "1"}, {"__name__": "x"}, {"1bad": "x"}, {"has-dash": "x"}]
)
def test_bad_constant_labels_are_config_errors(labels: dict[str, str]) -> None:
    with pytest.raises(ValidationError, match="metrics_labels"):
        plain(metrics_labels=labels)


def test_metrics_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASGI_GUARD_METRICS_PATH", "/-/metrics")
    monkeypatch.setenv("ASGI_GUARD_METRICS_LABELS", json.dumps({"service": "api"}))
    settings = GuardSettings(_env_file=None)  # type: ignore[call-arg]
    assert settings.metrics_path == "/-/metrics" and settings.metrics_labels == {"service": "api"}
    assert settings.metrics_on
    with pytest.raises(ValidationError, match="metrics_path"):
        plain(metrics_path="metrics")
