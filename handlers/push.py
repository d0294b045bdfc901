"""``push``: a tag push starts a query's job; a branch push is checked and noted."""

import structlog

from github_app.webhooks import Delivery, Outcome, current_service, router
from handlers.tags import confirm_or_reject, handle_tag, request_first_job

logger = structlog.get_logger(__name__)

ZERO_SHA = "0" * 40
TAG_PREFIX = "refs/tags/"
BRANCH_PREFIX = "refs/heads/"


@router.register("push")
def on_push(delivery: Delivery) -> Outcome:
    """Route a push to the tag rule or the branch rule."""
    service = current_service()
    payload = delivery.payload
    repo, ref = delivery.repo, str(payload.get("ref", ""))
    if repo is None:
        return Outcome(202, "ignored", "The delivery names no repository.")

    if repo not in service.settings.query_repositories:
        return Outcome(202, "ignored", f"Repository {repo} is not a query repository.")

    # A deleted ref has `after` of zeros: no API call is made with that SHA.
    if payload.get("deleted") or payload.get("after") == ZERO_SHA:
        return Outcome(202, "ignored", f"{ref} was deleted; nothing to run.")

    if ref.startswith(TAG_PREFIX):
        return handle_tag(delivery, repo=repo, tag=ref.removeprefix(TAG_PREFIX))

    if ref != BRANCH_PREFIX + service.settings.query_branch:
        return Outcome(202, "ignored", f"{ref} is not the query branch.")

    return _on_branch_push(delivery, repo)


def _on_branch_push(delivery: Delivery, repo: str) -> Outcome:
    service = current_service()
    payload = delivery.payload
    if payload.get("forced"):
        logger.warning(
            "Security: branch was force-pushed",
            repo=repo,
            branch=service.settings.query_branch,
            sha=payload.get("after"),
            before=payload.get("before"),
            pusher=_pusher_name(payload.get("pusher")),
        )

    shas = [c.get("id") for c in payload.get("commits") or [] if isinstance(c, dict)]
    shas = [sha for sha in shas if isinstance(sha, str)]
    # A tag that arrived before its commit reached the branch is acted on now.
    started = []
    for query in service.store.queries_with_commits(repo, shas):
        if query.state != "tagged":
            continue

        if confirm_or_reject(delivery, query) is not None:
            continue

        result = request_first_job(delivery, query, trigger="branch_push")
        if result.created:
            started.append(query.id)

    message = f"Noted {len(shas)} commit(s) on the branch."
    if payload.get("forced"):
        message += " The branch was force-pushed."
    if started:
        message += f" Created job requests for {', '.join(started)}."
    # Every worker drops its cached head when it finds a "forced_push" outcome.
    outcome = "forced_push" if payload.get("forced") else "noted"
    return Outcome(200, outcome, message, {"job_requests_for": started})


def _pusher_name(pusher: object) -> str | None:
    name = pusher.get("name") if isinstance(pusher, dict) else None
    return name if isinstance(name, str) else None
