"""A local stand-in for Job Server's interactive job-request endpoint.

It accepts ``POST /api/v2/interactive/job-requests/`` with a bearer token,
validates the body, honours ``Idempotency-Key`` and records each job request.
A repeated key with the same body returns the first job request with 200; a
repeated key with another body is rejected with 422.
Tests can add latency and make the next requests fail with a chosen status.
"""

from __future__ import annotations

import dataclasses
import datetime
import hmac
import http
import json
import re
import threading
import time
from collections.abc import Iterable
from typing import Any

from werkzeug.wrappers import Request, Response

JOB_REQUESTS_PATH = "/api/v2/interactive/job-requests/"

#: Each required field and the JSON type it must have.
FIELDS: dict[str, type] = {
    "analysis_request": str,
    "workspace": str,
    "backend": str,
    "sha": str,
    "requested_actions": list,
    "force_run_dependencies": bool,
    "created_by": str,
    "project_definition": str,
}
_SHA = re.compile(r"[0-9a-f]{40}")


@dataclasses.dataclass(frozen=True)
class JobRequest:
    """A job request that the stand-in created."""

    id: int
    url: str
    body: dict[str, Any]
    idempotency_key: str | None
    created_at: datetime.datetime

    def reply(self) -> dict[str, Any]:
        """Return the JSON response body for the request that created it."""
        return {"id": self.id, "url": self.url}


@dataclasses.dataclass(frozen=True)
class JobServerCall:
    """One request received on any path and the status of its response."""

    method: str
    path: str
    status: int
    idempotency_key: str | None


@dataclasses.dataclass
class _Failure:
    remaining: int
    status: int
    body: Any
    headers: dict[str, str]


class JobServerSandbox:
    """Job Server's job-request API, recording what the app sends it."""

    def __init__(self, token: str) -> None:
        self.token = token
        #: Seconds added to every request.
        self.latency = 0.0
        self.job_requests: list[JobRequest] = []
        self.calls: list[JobServerCall] = []
        self._by_key: dict[str, JobRequest] = {}
        self._failures: list[_Failure] = []
        self._lock = threading.Lock()

    def fail_next(
        self,
        count: int,
        status: int,
        *,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Fail the next ``count`` requests with ``status``, creating nothing.

        ``body`` defaults to ``{"detail": <reason phrase>}``.
        """
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}.")

        if body is None:
            body = {"detail": http.HTTPStatus(status).phrase}

        with self._lock:
            self._failures.append(_Failure(count, status, body, dict(headers or {})))

    def set_latency(self, seconds: float) -> None:
        """Add ``seconds`` to every request."""
        self.latency = seconds

    def job_requests_for(self, analysis_request: str) -> list[JobRequest]:
        """Return the job requests created for one analysis request (query id)."""
        with self._lock:
            return [
                job
                for job in self.job_requests
                if job.body.get("analysis_request") == analysis_request
            ]

    def wsgi_app(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        """Serve the job-request API as a WSGI application."""
        request = Request(environ)
        time.sleep(self.latency)
        status, body, headers = self._handle(request)
        key = request.headers.get("Idempotency-Key")
        with self._lock:
            self.calls.append(JobServerCall(request.method, request.path, status, key))

        response = Response(
            json.dumps(body), status, headers, content_type="application/json"
        )
        return response(environ, start_response)

    def _handle(self, request: Request) -> tuple[int, Any, dict[str, str]]:
        if request.path != JOB_REQUESTS_PATH:
            return 404, {"detail": "Not found."}, {}

        if request.method != "POST":
            return 405, {"detail": f'Method "{request.method}" not allowed.'}, {}

        failure = self._take_failure()
        if failure is not None:
            return failure.status, failure.body, failure.headers

        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        valid = scheme == "Bearer" and hmac.compare_digest(token, self.token)
        if not valid:
            return 401, {"detail": "Invalid token."}, {"WWW-Authenticate": "Bearer"}

        try:
            body = json.loads(request.get_data())
        except ValueError:
            body = None

        if not isinstance(body, dict):
            return 400, {"detail": "The request body must be a JSON object."}, {}

        problem = _validate(body)
        if problem is not None:
            return 400, {"detail": problem}, {}

        return self._create(request, body)

    def _create(
        self, request: Request, body: dict[str, Any]
    ) -> tuple[int, Any, dict[str, str]]:
        key = request.headers.get("Idempotency-Key")
        with self._lock:
            existing = self._by_key.get(key) if key else None
            if existing is not None:
                # A reused key with another body is a client error (422), as the
                # IETF Idempotency-Key header draft specifies.
                if existing.body != body:
                    return (
                        422,
                        {
                            "detail": f"Idempotency-Key {key!r} was already used "
                            "with a different request body."
                        },
                        {},
                    )

                return 200, existing.reply(), {}

            job_id = len(self.job_requests) + 1
            url = f"{request.root_url.rstrip('/')}/job-requests/{job_id}/"
            job = JobRequest(
                id=job_id,
                url=url,
                body=body,
                idempotency_key=key,
                created_at=datetime.datetime.now(datetime.UTC),
            )
            self.job_requests.append(job)
            if key:
                self._by_key[key] = job

        return 201, job.reply(), {"Location": url}

    def _take_failure(self) -> _Failure | None:
        with self._lock:
            if not self._failures:
                return None

            failure = self._failures[0]
            failure.remaining -= 1
            if failure.remaining == 0:
                self._failures.pop(0)

            return failure


def _validate(body: dict[str, Any]) -> str | None:
    """Return what is wrong with a job-request body, or None if it is valid."""
    missing = [name for name in FIELDS if body.get(name) is None]
    if missing:
        return f"Missing required field: {', '.join(repr(name) for name in missing)}."

    for name, kind in FIELDS.items():
        if not isinstance(body[name], kind):
            return f"Field {name!r} must be a JSON {_JSON_NAMES[kind]}."

    if not all(isinstance(action, str) for action in body["requested_actions"]):
        return "Field 'requested_actions' must be a list of strings."

    if not _SHA.fullmatch(body["sha"]):
        return f"Field 'sha' must be a 40-character commit SHA, got {body['sha']!r}."

    return None


_JSON_NAMES = {str: "string", list: "array", bool: "boolean"}
