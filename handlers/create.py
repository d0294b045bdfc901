"""``create``: a branch or tag was created; tags of queries start their jobs.

A ``create`` payload names the ref but carries no SHA, so the tag is resolved
through the API.
"""

from github_app.webhooks import Delivery, Outcome, current_service, router
from handlers.tags import handle_tag


@router.register("create")
def on_create(delivery: Delivery) -> Outcome:
    """Request the job of a newly tagged query."""
    repo = delivery.repo
    if repo is None:
        return Outcome(202, "ignored", "The delivery names no repository.")

    if repo not in current_service().settings.query_repositories:
        return Outcome(202, "ignored", f"Repository {repo} is not a query repository.")

    if delivery.payload.get("ref_type") != "tag":
        return Outcome(202, "ignored", "Only tag creation concerns this app.")

    return handle_tag(delivery, repo=repo, tag=str(delivery.payload.get("ref", "")))
