"""Deliveries get a response within GitHub's 10 seconds when GitHub or Job Server hang.

The GitHub stand-in gives up on a receiver after 10 seconds and records no
status code, so a delivery recorded with 503 got its response in time.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest

from github_app.config import Settings
from tests.webhook_stack import (
    Stack,
    captured_warnings,
    find_event,
    running_stack,
)

GET_REF = "GET /repos/{owner}/{repo}/git/ref/{ref}"


@pytest.fixture
def stack(settings: Settings, public_key_pem: bytes, tmp_path: Path) -> Iterator[Stack]:
    # The shipped timeouts and retry budget, not the short ones of unit tests.
    with running_stack(
        settings, public_key_pem, tmp_path, github_retry_budget=8.0, http_timeout=5
    ) as running:
        yield running


def test_github_hang_answered_in_time(stack: Stack) -> None:
    stack.post_query_quietly("q-slow-github")
    stack.github.set_latency(12.0, endpoint=GET_REF)

    with captured_warnings() as warnings:
        stack.announce_tag("q-slow-github")
        stack.settle()
        stack.wait_for_claims_released()

    answered = stack.tag_deliveries("q-slow-github")
    late = find_event(warnings, "Finished delivery after responding")
    assert [d.status_code for d in answered] == [503, 503]
    assert all(
        '"outcome":"timed_out"' in d.response_body.replace(" ", "") for d in answered
    )
    assert stack.jobs("q-slow-github") == []
    assert {event["status_code"] for event in late} == {503}

    stack.github.clear_faults()
    stack.github.redeliver(answered[0].id)
    stack.settle()

    [job] = stack.jobs("q-slow-github")
    assert stack.github.deliveries[-1].status_code == 201
    assert job.idempotency_key == "q-slow-github/1"


def test_job_server_hang_answered_in_time(stack: Stack) -> None:
    # Longer than the app's 5-second timeout: Job Server creates the job request
    # after the app has given up on the call.
    stack.job_server.set_latency(6.0)
    stack.post_query("q-slow-jobs")
    stack.settle()
    stack.wait_for_claims_released()
    answered = stack.tag_deliveries("q-slow-jobs")
    assert [d.status_code for d in answered] == [503, 503]
    assert stack.get_query("q-slow-jobs")["job_requests"] == []

    stack.job_server.set_latency(0.0)
    stack.github.redeliver(answered[0].id)
    stack.settle()

    [job] = stack.jobs("q-slow-jobs")
    assert stack.github.deliveries[-1].status_code == 201
    assert job.idempotency_key == "q-slow-jobs/1"
    assert len(stack.get_query("q-slow-jobs")["job_requests"]) == 1
