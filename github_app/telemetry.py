"""One log event and the metrics for every HTTP request, and ``GET /metrics``.

Each request gets a ``request_id`` (the proxy's ``X-Request-ID``, or a new one)
bound to every log event written while it is handled. After the response is
built, one ``Handled request`` event records the method, path, status and
duration, and what the response reports about the work: the delivery GUID
(``delivery_id``) and ``github_event`` of a webhook, the query id, the SHA and
the outcome. Probe routes (``/healthz``, ``/readyz``, ``/metrics``) log at debug
level, so polling does not flood the log.
"""

import time
import uuid
from typing import Any

import structlog
from flask import Flask, Response, g, request
from structlog.contextvars import bind_contextvars, clear_contextvars

from github_app import metrics

logger = structlog.get_logger(__name__)

PROBE_ENDPOINTS = frozenset({"healthz", "readyz", "metrics"})
WEBHOOK_ENDPOINT = "webhooks.receive"
CREATE_QUERY_ENDPOINT = "api.create_query"
#: Request ids from the proxy longer than this are replaced by a new one.
MAX_REQUEST_ID_LENGTH = 128


def init_app(app: Flask) -> None:
    """Log and measure every request of ``app``, and serve ``GET /metrics``."""
    app.before_request(_start)
    app.after_request(_finish)
    app.add_url_rule("/metrics", "metrics", _metrics, methods=["GET"])


def _start() -> None:
    clear_contextvars()
    request_id = request.headers.get("X-Request-ID", "")
    if not request_id or len(request_id) > MAX_REQUEST_ID_LENGTH:
        request_id = uuid.uuid4().hex
    bind_contextvars(request_id=request_id)
    g.started = time.monotonic()


def _finish(response: Response) -> Response:
    duration = time.monotonic() - g.get("started", time.monotonic())
    try:
        fields = _work_fields(response)
        _count(response, fields, duration)
        log = logger.debug if request.endpoint in PROBE_ENDPOINTS else logger.info
        log(
            "Handled request",
            method=request.method,
            path=request.path,
            status_code=response.status_code,
            duration_ms=round(duration * 1000, 1),
            **{name: value for name, value in fields.items() if value is not None},
        )
    except Exception:
        # The response is already built, and a failed log call must not change it.
        logger.exception("Failed to record request", path=request.path)

    return response


def _work_fields(response: Response) -> dict[str, Any]:
    """Return the delivery, query, SHA and outcome that a response is about."""
    parsed = response.get_json(silent=True) if response.is_json else None
    body: dict[str, Any] = parsed if isinstance(parsed, dict) else {}
    error = body.get("error")
    error = error if isinstance(error, dict) else {}
    details = error.get("details")
    details = details if isinstance(details, dict) else {}
    view_args = request.view_args or {}
    fields: dict[str, Any] = {
        "query_id": body.get("query_id") or view_args.get("query_id"),
        "sha": body.get("sha"),
        "outcome": body.get("outcome") or error.get("code") or body.get("state"),
    }
    if request.endpoint == WEBHOOK_ENDPOINT:
        fields["delivery_id"] = request.headers.get("X-GitHub-Delivery")
        # structlog keeps the log message under "event".
        fields["github_event"] = request.headers.get("X-GitHub-Event")
    elif request.blueprint == "api":
        fields["query_id"] = fields["query_id"] or body.get("id") or details.get("id")

    return fields


def _count(response: Response, fields: dict[str, Any], duration: float) -> None:
    if request.endpoint == WEBHOOK_ENDPOINT:
        # The event name of an unverified delivery is not to be trusted, so it
        # cannot add label values.
        verified = response.status_code != 401
        event = (fields.get("github_event") or "none") if verified else "unverified"
        outcome = fields.get("outcome") or str(response.status_code)
        metrics.DELIVERIES.labels(event=event, outcome=outcome).inc()
    elif request.endpoint == CREATE_QUERY_ENDPOINT and response.status_code == 201:
        metrics.QUERY_COMMIT_SECONDS.observe(duration)


def _metrics() -> Response:
    body, content_type = metrics.render()
    return Response(body, 200, content_type=content_type)
