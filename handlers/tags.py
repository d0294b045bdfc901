"""The shared rule for tag events: confirm the tag, then request the job once."""

import time
from typing import Any

import structlog

from github_app.deadlines import time_left
from github_app.queries import (
    JobRequestResult,
    QueryNotReadyError,
    TagRefusedError,
)
from github_app.store import Query
from github_app.webhooks import Delivery, Outcome, current_service

logger = structlog.get_logger(__name__)

#: Status codes of an earlier delivery that handled a tag event successfully.
SUCCEEDED = frozenset({200, 201})
#: GitHub marks a delivery failed when its response takes longer than this.
# https://docs.github.com/en/webhooks/using-webhooks/best-practices-for-using-webhooks#respond-within-10-seconds
GITHUB_TIMEOUT_MS = 10_000
#: Seconds between looks at a job request that another delivery is creating.
POLL_INTERVAL = 0.05
#: Seconds to wait for another delivery's job request outside a time budget.
MAX_WAIT = 8.0


def handle_tag(delivery: Delivery, *, repo: str, tag: str) -> Outcome:
    """Create the job request of the query tagged ``tag``, unless it already has one.

    A redelivery of a delivery that already succeeded is an admin's request to run
    the query again, so it creates another job request for the same commit.
    """
    service = current_service()
    query = service.store.find_query(repo, tag)
    if query is None:
        return Outcome(202, "ignored", f"Tag {tag} is not a query of this app.")

    rejected = confirm_or_reject(delivery, query)
    if rejected is not None:
        return rejected

    earlier = service.store.deliveries(delivery.guid)
    if any(
        item.status_code in SUCCEEDED and item.duration_ms < GITHUB_TIMEOUT_MS
        for item in earlier
    ):
        result = service.request_job(
            query, trigger="redelivery", delivery_id=delivery.guid, first=False
        )
    else:
        result = request_first_job(delivery, query, trigger="tag_event")

    return describe(query, result)


def confirm_or_reject(delivery: Delivery, query: Query) -> Outcome | None:
    """Confirm the query's tag is on the branch; return the rejection if it is not.

    Raises:
        ServiceUnavailableError, UpstreamRejectedError: GitHub failed.
    """
    service = current_service()
    try:
        service.confirm_tag(query)
    except TagRefusedError as exc:
        sha = (exc.details or {}).get("sha")
        logger.warning(
            "Security: rejected tag event",
            repo=query.repo,
            tag=query.id,
            sha=sha,
            recorded_sha=query.commit_sha,
            delivery_id=delivery.guid,
            reason=exc.message,
        )
        details = {"query_id": query.id, "sha": sha}
        return Outcome(422, "rejected", exc.message, details, query.id)
    except QueryNotReadyError as exc:
        message = f"{exc.message} Redeliver this delivery once the tag exists."
        return Outcome(503, "not_ready", message, {"query_id": query.id}, query.id)

    return None


def request_first_job(
    delivery: Delivery, query: Query, *, trigger: str
) -> JobRequestResult:
    """Create the query's first job request, or wait for the one being created.

    The database lets one delivery at a time own the first job request. Another
    delivery of the same tag (``push`` and ``create`` arrive together) waits until
    the owner has created it, or takes over if the owner's call failed, so neither
    gets a success response before the job request exists. The wait ends with the
    time budget, and a job request still pending then is returned as it is.
    """
    service = current_service()
    left = time_left()
    deadline = time.monotonic() + (MAX_WAIT if left is None else left)
    while True:
        result: JobRequestResult = service.request_job(
            query, trigger=trigger, delivery_id=delivery.guid, first=True
        )
        if result.created or result.row.status == "created":
            return result

        if time.monotonic() + POLL_INTERVAL >= deadline:
            return result

        time.sleep(POLL_INTERVAL)


def describe(query: Query, result: JobRequestResult) -> Outcome:
    """Turn a job request result into the response for GitHub's delivery log."""
    row = result.row
    details: dict[str, Any] = {
        "query_id": query.id,
        "sha": row.sha,
        "job_request_id": row.job_server_id,
        "job_request_url": row.url,
        "trigger": row.trigger,
    }
    if result.created:
        message = (
            f"Created job request {row.job_server_id} for query {query.id} at "
            f"{row.sha}."
        )
        return Outcome(201, "job_requested", message, details, query.id)

    if row.status == "created":
        message = f"Query {query.id} already has job request {row.job_server_id}."
        return Outcome(200, "already_requested", message, details, query.id)

    message = (
        f"Another delivery is still creating the job request of query {query.id}; "
        "redeliver this delivery if the query shows no job request."
    )
    return Outcome(503, "in_progress", message, details, query.id)
