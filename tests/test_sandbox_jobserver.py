"""Tests for the Job Server stand-in and the loopback server helper."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from sandbox.jobserver import JOB_REQUESTS_PATH, JobServerSandbox
from sandbox.servers import RunningServer, serve

TOKEN = "job-server-token"


@pytest.fixture
def job_server() -> JobServerSandbox:
    return JobServerSandbox(TOKEN)


@pytest.fixture
def server(job_server: JobServerSandbox) -> Iterator[RunningServer]:
    with serve(job_server.wsgi_app) as running:
        yield running


def job_request(**changes: Any) -> dict[str, Any]:
    body = {
        "analysis_request": "01HV3Z8Q4J6Y9K2M5N7P0R1S2T",
        "workspace": "interactive-queries",
        "backend": "tpp",
        "sha": "a" * 40,
        "requested_actions": ["run_all"],
        "force_run_dependencies": True,
        "created_by": "jdoe",
        "project_definition": "version: '4.0'\n",
    }
    return body | changes


def post(
    server: RunningServer,
    body: Any,
    *,
    token: str = TOKEN,
    key: str | None = None,
) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"}
    if key is not None:
        headers["Idempotency-Key"] = key

    return requests.post(
        server.url + JOB_REQUESTS_PATH, json=body, headers=headers, timeout=5
    )


def test_create_job_request(
    job_server: JobServerSandbox, server: RunningServer
) -> None:
    response = post(server, job_request(), key="01HV/1")

    assert response.status_code == 201
    assert response.json() == {"id": 1, "url": f"{server.url}/job-requests/1/"}
    assert len(job_server.job_requests) == 1
    assert job_server.job_requests[0].body == job_request()
    assert job_server.job_requests[0].idempotency_key == "01HV/1"


def test_same_idempotency_key_returns_same_job(
    job_server: JobServerSandbox, server: RunningServer
) -> None:
    first = post(server, job_request(), key="01HV/1")
    again = post(server, job_request(), key="01HV/1")
    other = post(server, job_request(), key="01HV/2")

    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json() == first.json()
    assert other.status_code == 201
    assert other.json()["id"] == 2
    assert len(job_server.job_requests) == 2


def test_reused_key_with_other_body_is_422(
    job_server: JobServerSandbox, server: RunningServer
) -> None:
    post(server, job_request(), key="01HV/1")

    response = post(server, job_request(backend="emis"), key="01HV/1")

    assert response.status_code == 422
    assert "Idempotency-Key" in response.json()["detail"]
    assert len(job_server.job_requests) == 1


def test_requests_without_key_are_not_deduplicated(
    job_server: JobServerSandbox, server: RunningServer
) -> None:
    post(server, job_request())
    post(server, job_request())

    assert [job.id for job in job_server.job_requests] == [1, 2]


@pytest.mark.parametrize("token", ["wrong", ""])
def test_bad_token_is_401(
    job_server: JobServerSandbox, server: RunningServer, token: str
) -> None:
    response = post(server, job_request(), token=token)

    assert response.status_code == 401
    assert job_server.job_requests == []


@pytest.mark.parametrize("field", ["sha", "project_definition", "created_by"])
def test_missing_field_is_400_naming_it(server: RunningServer, field: str) -> None:
    body = job_request()
    del body[field]

    response = post(server, body)

    assert response.status_code == 400
    assert repr(field) in response.json()["detail"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"sha": "main"}, "sha"),
        ({"requested_actions": "run_all"}, "requested_actions"),
        ({"requested_actions": [1]}, "requested_actions"),
        ({"force_run_dependencies": "yes"}, "force_run_dependencies"),
    ],
)
def test_wrong_field_type_is_400(
    server: RunningServer, changes: dict[str, Any], field: str
) -> None:
    response = post(server, job_request(**changes))

    assert response.status_code == 400
    assert field in response.json()["detail"]


def test_body_that_is_not_an_object_is_400(server: RunningServer) -> None:
    response = post(server, ["not", "an", "object"])

    assert response.status_code == 400


def test_unknown_path_is_404(server: RunningServer) -> None:
    response = requests.get(server.url + "/api/v2/other/", timeout=5)

    assert response.status_code == 404


def test_fail_next_requests(
    job_server: JobServerSandbox, server: RunningServer
) -> None:
    job_server.fail_next(2, 503, headers={"Retry-After": "0"})

    first = post(server, job_request(), key="k")
    second = post(server, job_request(), key="k")
    third = post(server, job_request(), key="k")

    assert first.status_code == 503
    assert first.headers["Retry-After"] == "0"
    assert first.json() == {"detail": "Service Unavailable"}
    assert second.status_code == 503
    assert third.status_code == 201
    assert [call.status for call in job_server.calls] == [503, 503, 201]
    assert len(job_server.job_requests) == 1


def test_latency_is_added(job_server: JobServerSandbox, server: RunningServer) -> None:
    job_server.set_latency(0.2)

    started = time.monotonic()
    post(server, job_request())

    assert time.monotonic() - started >= 0.2


def test_job_requests_for_query(
    job_server: JobServerSandbox, server: RunningServer
) -> None:
    post(server, job_request(), key="a/1")
    post(server, job_request(analysis_request="other"), key="b/1")

    jobs = job_server.job_requests_for("01HV3Z8Q4J6Y9K2M5N7P0R1S2T")

    assert [job.idempotency_key for job in jobs] == ["a/1"]


def test_server_listens_on_loopback_and_stops(job_server: JobServerSandbox) -> None:
    running = serve(job_server.wsgi_app)
    url = running.url

    running.stop()
    running.stop()

    assert url.startswith("http://127.0.0.1:")
    with pytest.raises(requests.ConnectionError):
        requests.get(url + JOB_REQUESTS_PATH, timeout=2)
