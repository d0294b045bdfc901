"""The shared rule for tag events: confirm the tag, then request the job once."""

from github_app.webhooks import Delivery, Outcome, current_service

#: Status codes of an earlier delivery that handled a tag event successfully.
SUCCEEDED = frozenset({200, 201})


def handle_tag(delivery: Delivery, *, repo: str, tag: str) -> Outcome:
    """Create the job request of the query tagged ``tag``, unless it already has one.

    A redelivery of a delivery that already succeeded is an admin's request to run
    the query again, so it creates another job request for the same commit.
    """
    service = current_service()
    query = service.store.find_query(repo, tag)
    if query is None:
        return Outcome(202, "ignored", f"Tag {tag} is not a query of this app.")

    sha = service.confirm_tag(query)
    earlier = service.store.deliveries(delivery.guid)
    rerun = any(item.status_code in SUCCEEDED for item in earlier)
    result = service.request_job(
        query,
        trigger="redelivery" if rerun else "tag_event",
        delivery_id=delivery.guid,
        first=not rerun,
    )
    row = result.row
    details = {
        "query_id": query.id,
        "sha": sha,
        "job_request_id": row.job_server_id,
        "job_request_url": row.url,
    }
    if result.created:
        message = f"Created job request {row.job_server_id} for {query.id} at {sha}."
        return Outcome(201, "job_requested", message, details, query.id)

    if row.status == "created":
        message = f"Query {query.id} already has job request {row.job_server_id}."
        return Outcome(200, "already_requested", message, details, query.id)

    message = f"Another delivery is creating the job request of {query.id}."
    return Outcome(202, "in_progress", message, details, query.id)
