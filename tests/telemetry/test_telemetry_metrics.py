"""Prometheus: counts after known traffic, read back through the exposition endpoint and its parser."""

from __future__ import annotations

from typing import Any

import pytest
from telemetry_apps import guarded, parse, sample, settings, token, unique

from asgi_guard import JobConfig
from asgi_guard.core.errors import ConfigError
from asgi_guard.core.metrics import job_histogram

PATH = "/jobs/{resource_id}"


def rejections(families: dict[str, list[Any]], route: str, stage: str) -> dict[str, float]:
    """{reason: count} of the route's rejections by `stage`."""
    return {
        s.labels["reason"]: s.value
        for s in families.get("asgi_guard_rejections", [])
        if s.name.endswith("_total") and s.labels["route"] == route and s.labels["stage"] == stage
    }


async def scrape(client: Any, **headers: str) -> dict[str, list[Any]]:
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


async def test_counts_after_known_traffic(make_client: Any) -> None:
    route = unique("jobs_")
    histogram = unique("job_seconds_")
    config = JobConfig(
        endpoint_name=route,
        metrics={"histogram_name": histogram, "histogram_description": "Time spent running jobs"},
        security={"auth_type_required": "jwt"},
        rate_limit={"enabled": True, "token_bucket": {"rate_limit": 2, "refill_rate": 0.001}},
    )
    client = make_client(guarded(PATH, config))
    auth = {"authorization": f"Bearer {token('carol')}"}
    statuses = [
        (await client.post("/jobs/1", headers=auth)).status_code,
        (await client.post("/jobs/1", headers=auth)).status_code,
        (await client.post("/jobs/1", headers=auth)).status_code,
        (await client.post("/jobs/1")).status_code,
        (await client.post("/jobs/1", headers={"authorization": "Bearer not-a-jwt"})).status_code,
    ]
    assert statuses == [200, 200, 429, 401, 401]
    families = await scrape(client)

    assert sample(families, "asgi_guard_requests_total", route=route, method="POST", status="200") == 2
    assert sample(families, "asgi_guard_requests_total", route=route, method="POST", status="429") == 1
    assert sample(families, "asgi_guard_requests_total", route=route, method="POST", status="401") == 2
    assert sample(families, "asgi_guard_request_duration_seconds_count", route=route) == 5
    limited = rejections(families, route, "rate_limit")
    assert limited == {"rate_limited": 1.0}, limited  # reason: the stage's Decision.reason
    assert set(limited) <= {"rate-limited", "rate_limited"}
    # The route's own histogram: only requests that reached the handler, labelled by route.
    assert families[histogram][0].name.startswith(histogram)
    assert sample(families, f"{histogram}_count", route=route) == 2
    assert sample(families, f"{histogram}_bucket", route=route, le="+Inf") == 2
    assert sample(families, f"{histogram}_sum", route=route) > 0


async def test_cache_hits_and_misses_are_counted(make_client: Any) -> None:
    route = unique("cached_")
    config = JobConfig(endpoint_name=route, cache={"enabled": True, "shared": True})
    client = make_client(guarded("/items/{resource_id}", config, methods=["GET"]))
    for path in ("/items/1", "/items/1", "/items/1", "/items/2"):
        assert (await client.get(path)).status_code == 200
    families = await scrape(client)
    assert sample(families, "asgi_guard_cache_lookups_total", route=route, result="miss") == 2
    assert sample(families, "asgi_guard_cache_lookups_total", route=route, result="hit") == 2
    assert sample(families, "asgi_guard_requests_total", route=route, method="GET", status="200") == 4


async def test_resource_id_labels_are_capped(make_client: Any) -> None:
    route, histogram = unique("res_"), unique("by_resource_seconds_")
    config = JobConfig(
        endpoint_name=route,
        metrics={"histogram_name": histogram, "histogram_label": "resource_id", "resource_id_cap": 2},
    )
    client = make_client(guarded(PATH, config))
    for rid in ("a", "b", "c", "a", "d", "b"):
        assert (await client.post(f"/jobs/{rid}")).status_code == 200
    families = await scrape(client)
    counts = {s.labels["resource_id"]: s.value for s in families[histogram] if s.name == f"{histogram}_count"}
    assert counts == {"a": 2, "b": 2, "__other__": 2}


async def test_token_protects_the_endpoint(make_client: Any) -> None:
    route = unique("tok_")
    client = make_client(
        guarded(PATH, JobConfig(endpoint_name=route), settings_=settings(metrics_token="s3cret-scrape"))
    )
    assert (await client.post("/jobs/1")).status_code == 200
    missing = await client.get("/metrics")
    assert missing.status_code == 401
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.headers["www-authenticate"].startswith("Bearer")
    wrong = await client.get("/metrics", headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers["www-authenticate"]
    families = await scrape(client, authorization="Bearer s3cret-scrape")
    assert sample(families, "asgi_guard_requests_total", route=route, method="POST", status="200") == 1
    assert (await client.post("/metrics")).status_code == 405


async def test_custom_path_openmetrics_and_off(make_client: Any) -> None:
    route = unique("om_")
    client = make_client(
        guarded(PATH, JobConfig(endpoint_name=route), settings_=settings(metrics_path="/-/prom"))
    )
    assert (await client.post("/jobs/1")).status_code == 200
    response = await client.get("/-/prom", headers={"accept": "application/openmetrics-text; version=1.0.0"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")
    assert (await client.get("/metrics")).status_code == 404  # not ours any more: the app's 404

    off = make_client(
        guarded(PATH, JobConfig(endpoint_name=unique("off_")), settings_=settings(metrics_path=""))
    )
    assert (await off.get("/metrics")).status_code == 404


async def test_several_apps_share_collectors(make_client: Any) -> None:
    histogram = unique("shared_seconds_")
    route = unique("twice_")
    config = JobConfig(endpoint_name=route, metrics={"histogram_name": histogram})
    first, second = make_client(guarded(PATH, config)), make_client(guarded(PATH, config))
    assert (await first.post("/jobs/1")).status_code == 200
    assert (await second.post("/jobs/1")).status_code == 200
    families = await scrape(second)
    assert sample(families, f"{histogram}_count", route=route) == 2
    # The same name with other labels is a configuration error, not a crash per request.
    with pytest.raises(ConfigError):
        job_histogram(
            JobConfig(metrics={"histogram_name": histogram, "histogram_label": "resource_id"}).metrics
        )
    with pytest.raises(ConfigError):
        job_histogram(JobConfig(metrics={"histogram_name": "asgi_guard_requests"}).metrics)


def test_histogram_name_is_validated() -> None:
    with pytest.raises(ValueError):
        JobConfig(metrics={"histogram_name": "not a metric name"})
    with pytest.raises(ValueError):
        JobConfig(metrics={"histogram_label": "user"})


async def test_security_rejections_counted_once(make_client: Any) -> None:
    route = unique("sec_")
    config = JobConfig(endpoint_name=route, security={"auth_type_required": "jwt"})
    client = make_client(guarded(PATH, config))
    assert (await client.post("/jobs/1")).status_code == 401
    assert (await client.post("/jobs/1")).status_code == 401
    families = await scrape(client)
    assert sum(rejections(families, route, "security").values()) == 2


async def test_handler_exception_counts_as_500() -> None:
    import httpx

    route, histogram = unique("fails_"), unique("fails_seconds_")
    app = guarded(PATH, JobConfig(endpoint_name=route, metrics={"histogram_name": histogram}))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        assert (await client.post("/jobs/1?boom=1")).status_code == 500
        assert (await client.post("/jobs/1")).status_code == 200
        families = await scrape(client)
    assert sample(families, "asgi_guard_requests_total", route=route, method="POST", status="500") == 1
    assert sample(families, "asgi_guard_requests_total", route=route, method="POST", status="200") == 1
    assert sample(families, f"{histogram}_count", route=route) == 2  # a failed job still took time
    assert rejections(families, route, "job_span") == {}  # an error is not a rejection
