"""The app's only route to Job Server: creating interactive job requests.

Callers see this module's exceptions, never those of requests:

- ``JobServerUnavailableError``: a timeout, a connection failure, a 5xx or a 409
  (another request with the same idempotency key is in flight). Repeating the call
  with the same idempotency key is safe.
- ``JobServerResponseError``: any other 4xx. Job Server rejected the request and
  its message is kept in ``body``.
"""

from dataclasses import dataclass
from typing import Any

import requests
import structlog

from github_app.config import Settings
from github_app.deadlines import limit_timeout

logger = structlog.get_logger(__name__)

JOB_REQUESTS_PATH = "/api/v2/interactive/job-requests/"


class JobServerError(Exception):
    """Base class of this module's errors."""


class JobServerUnavailableError(JobServerError):
    """Job Server could not be reached or failed transiently."""


class JobServerResponseError(JobServerError):
    """Job Server rejected the job request."""

    def __init__(self, message: str, *, status: int, body: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


@dataclass(frozen=True)
class JobRequestSpec:
    """The fields Job Server needs to run a query's committed code."""

    analysis_request: str
    workspace: str
    backend: str
    sha: str
    created_by: str
    project_definition: str

    def as_json(self) -> dict[str, Any]:
        return {
            "analysis_request": self.analysis_request,
            "workspace": self.workspace,
            "backend": self.backend,
            "sha": self.sha,
            "requested_actions": ["run_all"],
            "force_run_dependencies": True,
            "created_by": self.created_by,
            "project_definition": self.project_definition,
        }


@dataclass(frozen=True)
class CreatedJobRequest:
    id: int | str
    url: str


class JobServerClient:
    """Create job requests in Job Server with a bearer token."""

    def __init__(self, *, base_url: str, token: str, timeout: float = 5.0) -> None:
        self._url = base_url.rstrip("/") + JOB_REQUESTS_PATH
        self._token = token
        self._timeout = timeout
        self._session = requests.Session()

    @classmethod
    def from_settings(cls, settings: Settings) -> "JobServerClient":
        """Build the client the app's settings describe."""
        return cls(
            base_url=settings.job_server_url,
            token=settings.job_server_token,
            timeout=settings.http_timeout,
        )

    def create_job_request(
        self, spec: JobRequestSpec, *, idempotency_key: str
    ) -> CreatedJobRequest:
        """Create a job request; the same ``idempotency_key`` never makes two.

        Raises:
            JobServerUnavailableError: retry later with the same key.
            JobServerResponseError: Job Server rejected the request.
        """
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Idempotency-Key": idempotency_key,
        }
        timeout = limit_timeout(self._timeout)
        if timeout <= 0:
            raise JobServerUnavailableError(
                "The time budget for responding to GitHub's webhook delivery ran out "
                "before Job Server could be called."
            )

        try:
            response = self._session.post(
                self._url, json=spec.as_json(), headers=headers, timeout=timeout
            )
        except requests.RequestException as exc:
            raise JobServerUnavailableError(
                f"Job Server could not be reached: {type(exc).__name__}"
            ) from exc

        body = _json_or_text(response)
        if response.status_code >= 500 or response.status_code == 409:
            raise JobServerUnavailableError(
                f"Job Server responded {response.status_code}: {_message(body)}"
            )

        if response.status_code >= 400:
            raise JobServerResponseError(
                f"Job Server rejected the job request with {response.status_code}: "
                f"{_message(body)}",
                status=response.status_code,
                body=body,
            )

        if not isinstance(body, dict) or "id" not in body:
            raise JobServerUnavailableError(
                f"Job Server responded {response.status_code} without a job request id."
            )

        return CreatedJobRequest(id=body["id"], url=str(body.get("url", "")))

    def check_access(self) -> int:
        """Send an empty job request, which Job Server must reject as invalid.

        Nothing is created: Job Server checks the token first, then rejects the
        empty body with a 400. Returns that status.

        Raises:
            JobServerUnavailableError: Job Server could not be reached or failed.
            JobServerResponseError: Job Server rejected the token, or responded with
                something other than a validation error.
        """
        try:
            response = self._session.post(
                self._url,
                json={},
                headers={"Authorization": f"Bearer {self._token}"},
                timeout=self._timeout,
            )
        except requests.RequestException as exc:
            raise JobServerUnavailableError(
                f"Job Server could not be reached: {type(exc).__name__}"
            ) from exc

        body = _json_or_text(response)
        if response.status_code >= 500:
            raise JobServerUnavailableError(
                f"Job Server responded {response.status_code}: {_message(body)}"
            )

        if response.status_code in (401, 403):
            raise JobServerResponseError(
                f"Job Server rejected JOB_SERVER_TOKEN with {response.status_code}: "
                "set it to the token Job Server issued to this app.",
                status=response.status_code,
                body=body,
            )

        if response.status_code not in (400, 422):
            raise JobServerResponseError(
                f"Job Server responded {response.status_code} to an empty job "
                "request, not a validation error: check JOB_SERVER_URL.",
                status=response.status_code,
                body=body,
            )

        return response.status_code


def _json_or_text(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:500]


def _message(body: Any) -> str:
    if isinstance(body, dict):
        for key in ("detail", "message", "error"):
            if key in body:
                return str(body[key])

    return str(body)[:200]
