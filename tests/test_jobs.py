"""The Job Server client: request shape, headers, and error classification."""

from collections.abc import Iterator

import pytest
import requests
import responses
from responses import matchers

from github_app.jobs import (
    CreatedJobRequest,
    JobRequestSpec,
    JobServerClient,
    JobServerResponseError,
    JobServerUnavailableError,
)
from tests.conftest import JOB_SERVER_URL

JOB_REQUESTS_URL = f"{JOB_SERVER_URL}/api/v2/interactive/job-requests/"
TOKEN = "job-server-token-value"
QUERY_ID = "01HV3Z8Q4J6Y9K2M5N7P0R1S2T"
SHA = "c" * 40
PROJECT_YAML = 'version: "4.0"\nactions: {}\n'
IDEMPOTENCY_KEY = f"{QUERY_ID}/1"

SPEC = JobRequestSpec(
    analysis_request=QUERY_ID,
    workspace="interactive-queries",
    backend="tpp",
    sha=SHA,
    created_by="jdoe",
    project_definition=PROJECT_YAML,
)


@pytest.fixture
def mock() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as requests_mock:
        yield requests_mock


@pytest.fixture
def job_server() -> JobServerClient:
    return JobServerClient(base_url=JOB_SERVER_URL + "/", token=TOKEN, timeout=3.0)


def create(job_server: JobServerClient) -> CreatedJobRequest:
    return job_server.create_job_request(SPEC, idempotency_key=IDEMPOTENCY_KEY)


def test_create_job_request_body_and_headers(
    job_server: JobServerClient, mock: responses.RequestsMock
) -> None:
    mock.add(
        "POST",
        JOB_REQUESTS_URL,
        status=201,
        json={"id": 17, "url": f"{JOB_SERVER_URL}/job-requests/17/"},
        match=[
            matchers.json_params_matcher(
                {
                    "analysis_request": QUERY_ID,
                    "workspace": "interactive-queries",
                    "backend": "tpp",
                    "sha": SHA,
                    "requested_actions": ["run_all"],
                    "force_run_dependencies": True,
                    "created_by": "jdoe",
                    "project_definition": PROJECT_YAML,
                }
            ),
            matchers.header_matcher(
                {"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": IDEMPOTENCY_KEY}
            ),
        ],
    )

    created = create(job_server)

    assert created == CreatedJobRequest(id=17, url=f"{JOB_SERVER_URL}/job-requests/17/")


def test_create_job_request_sets_timeout(
    job_server: JobServerClient, mock: responses.RequestsMock
) -> None:
    mock.add("POST", JOB_REQUESTS_URL, status=201, json={"id": 17, "url": ""})

    create(job_server)

    [call] = mock.calls
    assert call.request.req_kwargs["timeout"] == 3.0


@pytest.mark.parametrize("status", [500, 502, 503, 504, 409])
def test_create_job_request_transient_status(
    job_server: JobServerClient, mock: responses.RequestsMock, status: int
) -> None:
    mock.add("POST", JOB_REQUESTS_URL, status=status, json={"detail": "try again"})

    with pytest.raises(JobServerUnavailableError, match=str(status)):
        create(job_server)


@pytest.mark.parametrize(
    "error",
    [
        requests.ConnectTimeout("connect timed out"),
        requests.ReadTimeout("read timed out"),
        requests.ConnectionError("connection refused"),
    ],
)
def test_create_job_request_unreachable(
    job_server: JobServerClient, mock: responses.RequestsMock, error: Exception
) -> None:
    mock.add("POST", JOB_REQUESTS_URL, body=error)

    with pytest.raises(JobServerUnavailableError, match=type(error).__name__):
        create(job_server)


def test_create_job_request_html_5xx(
    job_server: JobServerClient, mock: responses.RequestsMock
) -> None:
    mock.add(
        "POST",
        JOB_REQUESTS_URL,
        status=502,
        body="<html>Bad Gateway</html>",
        content_type="text/html",
    )

    with pytest.raises(JobServerUnavailableError, match="Bad Gateway"):
        create(job_server)


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (400, {"detail": "Unknown backend 'tpp'"}, "Unknown backend 'tpp'"),
        (401, {"detail": "Invalid token."}, "Invalid token."),
        (403, {"message": "Workspace is archived"}, "Workspace is archived"),
        (404, {"error": "Workspace not found"}, "Workspace not found"),
        (422, {"detail": "sha is not on main"}, "sha is not on main"),
    ],
)
def test_create_job_request_rejected(
    job_server: JobServerClient,
    mock: responses.RequestsMock,
    status: int,
    body: dict[str, str],
    message: str,
) -> None:
    mock.add("POST", JOB_REQUESTS_URL, status=status, json=body)

    with pytest.raises(JobServerResponseError, match=str(status)) as info:
        create(job_server)

    assert info.value.status == status
    assert info.value.body == body
    assert message in str(info.value)


def test_create_job_request_rejected_text_body(
    job_server: JobServerClient, mock: responses.RequestsMock
) -> None:
    mock.add(
        "POST",
        JOB_REQUESTS_URL,
        status=400,
        body="backend must be one of tpp, emis",
        content_type="text/plain",
    )

    with pytest.raises(JobServerResponseError, match="backend must be one of") as info:
        create(job_server)

    assert info.value.status == 400
    assert info.value.body == "backend must be one of tpp, emis"


def test_create_job_request_rejection_hides_token(
    job_server: JobServerClient, mock: responses.RequestsMock
) -> None:
    mock.add("POST", JOB_REQUESTS_URL, status=401, json={"detail": "Invalid token."})

    with pytest.raises(JobServerResponseError) as info:
        create(job_server)

    assert TOKEN not in str(info.value)


def test_create_job_request_success_without_id(
    job_server: JobServerClient, mock: responses.RequestsMock
) -> None:
    mock.add("POST", JOB_REQUESTS_URL, status=201, json={"url": "no id"})

    with pytest.raises(JobServerUnavailableError, match="without a job request id"):
        create(job_server)
