"""The query API that Job Server calls: submit, read and re-run queries.

Every route needs ``Authorization: Bearer <token>`` with a token from
``API_TOKENS``, compared in constant time. Errors are
``{"error": {"code", "message", "details"}}``.
"""

import hmac
import json
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from github_app.queries import QueryError, QueryNotFoundError, QueryService
from github_app.store import Query

bp = Blueprint("api", __name__, url_prefix="/api/v1")

#: Query requests are small; anything larger is a mistake or an attack.
MAX_REQUEST_BYTES = 256 * 1024


def error_response(
    status: int, code: str, message: str, details: Any = None
) -> tuple[Response, int]:
    body = {"error": {"code": code, "message": message, "details": details}}
    return jsonify(body), status


def _service() -> QueryService:
    service: QueryService = current_app.extensions["query_service"]
    return service


def _token_accepted(header: str) -> bool:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False

    accepted = False
    for candidate in current_app.config["SETTINGS"].api_tokens:
        accepted |= hmac.compare_digest(candidate.encode(), token.strip().encode())
    return accepted


@bp.before_request
def authenticate() -> tuple[Response, int] | None:
    if not _token_accepted(request.headers.get("Authorization", "")):
        return error_response(
            401,
            "unauthorized",
            "A valid bearer token is required: send Authorization: Bearer <token> "
            "with a token from the app's API_TOKENS.",
        )

    return None


@bp.errorhandler(QueryError)
def on_query_error(exc: QueryError) -> tuple[Response, int]:
    return error_response(exc.status, exc.code, exc.message, exc.details)


def serialize(query: Query) -> dict[str, Any]:
    """Return the query as the API shows it."""
    job_requests = [
        {
            "id": row.job_server_id,
            "url": row.url,
            "trigger": row.trigger,
            "sha": row.sha,
            "created_at": row.created_at.isoformat(),
        }
        for row in _service().store.job_requests(query.id)
        if row.status == "created"
    ]
    return {
        "id": query.id,
        "state": query.state,
        "repo": query.repo,
        "branch": query.branch,
        "sha": query.commit_sha,
        "tag": query.id if query.tag_sha else None,
        "commit_url": query.commit_url,
        "job_requests": job_requests,
        "error": query.error,
    }


@bp.post("/queries")
def create_query() -> tuple[Response, int]:
    if (request.content_length or 0) > MAX_REQUEST_BYTES:
        return error_response(
            413, "too_large", f"Query requests are limited to {MAX_REQUEST_BYTES} bytes."
        )

    if not request.is_json:
        return error_response(
            415,
            "unsupported_media_type",
            "Send the query as JSON with Content-Type: application/json.",
        )

    raw = request.get_data(cache=False)
    if len(raw) > MAX_REQUEST_BYTES:
        return error_response(
            413, "too_large", f"Query requests are limited to {MAX_REQUEST_BYTES} bytes."
        )

    try:
        body = json.loads(raw)
    except ValueError as exc:
        return error_response(400, "invalid_json", f"The body is not valid JSON: {exc}")
    except RecursionError:
        return error_response(400, "invalid_json", "The body is nested too deeply.")

    query, created = _service().submit(body)
    return jsonify(serialize(query)), 201 if created else 200


@bp.get("/queries/<query_id>")
def get_query(query_id: str) -> tuple[Response, int]:
    query = _service().store.get_query(query_id)
    if query is None:
        raise QueryNotFoundError(f"No query with id {query_id!r} was received.")

    return jsonify(serialize(query)), 200


@bp.post("/queries/<query_id>/resubmit")
def resubmit_query(query_id: str) -> tuple[Response, int]:
    _service().resubmit(query_id, trigger="resubmit")
    query = _service().store.get_query(query_id)
    assert query is not None  # noqa: S101 - resubmit found it
    return jsonify(serialize(query)), 201
