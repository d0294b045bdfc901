"""The time budget of a delivery and how the clients keep to it."""

import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import responses

from github_app.deadlines import limit_timeout, time_budget, time_left
from github_app.deliveries import Attempt
from github_app.github import GitHubClient, GitHubUnavailableError
from github_app.jobs import JobRequestSpec, JobServerClient, JobServerUnavailableError
from tests.conftest import GITHUB_URL, JOB_SERVER_URL, REPO

SPEC = JobRequestSpec(
    analysis_request="q-1",
    workspace="interactive-queries",
    backend="tpp",
    sha="c" * 40,
    created_by="jdoe",
    project_definition="version: '4.0'\n",
)


@pytest.fixture
def mock() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as requests_mock:
        yield requests_mock


@contextmanager
def spent_budget() -> Iterator[None]:
    """Run the block under a time budget that is already spent."""
    with time_budget(0.001):
        time.sleep(0.01)
        yield


class TestTimeBudget:
    def test_no_budget_outside_block(self) -> None:
        assert time_left() is None
        assert limit_timeout(5.0) == 5.0

    def test_budget_shortens_timeout(self) -> None:
        with time_budget(2.0):
            shortened = limit_timeout(5.0)
            kept = limit_timeout(1.0)

        assert 0 < shortened <= 2.0
        assert kept == 1.0
        assert time_left() is None

    def test_spent_budget_leaves_zero(self) -> None:
        with spent_budget():
            left = time_left()
            timeout = limit_timeout(5.0)

        assert left == 0
        assert timeout == 0

    @pytest.mark.parametrize("seconds", [0, -1.5])
    def test_budget_must_be_positive(self, seconds: float) -> None:
        with pytest.raises(ValueError, match="must be positive"):
            with time_budget(seconds):
                pass


def test_job_server_not_called_without_time(mock: responses.RequestsMock) -> None:
    client = JobServerClient(base_url=JOB_SERVER_URL, token="t", timeout=5.0)
    with spent_budget(), pytest.raises(JobServerUnavailableError, match="time budget"):
        client.create_job_request(SPEC, idempotency_key="q-1/1")

    assert len(mock.calls) == 0


def test_github_not_called_without_time(
    private_key_pem: str, mock: responses.RequestsMock
) -> None:
    client = GitHubClient(
        app_id="12345", private_key=private_key_pem, base_url=GITHUB_URL
    )
    with spent_budget(), pytest.raises(GitHubUnavailableError, match="time budget"):
        client.installation_id(REPO)

    assert len(mock.calls) == 0


def test_attempt_from_github_json() -> None:
    item = {
        "id": 12,
        "guid": "0b989ba4-242f-11e5-81e1-c7b6966d2516",
        "delivered_at": "2024-05-01T12:00:00Z",
        "redelivery": True,
        "duration": 0.27,
        "status": "Invalid HTTP Response: 503",
        "status_code": 503,
        "event": "create",
        "action": None,
        "installation_id": 1,
        "repository_id": 1001,
        "throttled_at": None,
    }

    attempt = Attempt.from_json(item)

    assert attempt.id == 12
    assert attempt.delivered_at.isoformat() == "2024-05-01T12:00:00+00:00"
    assert attempt.redelivery is True
    assert attempt.succeeded is False
