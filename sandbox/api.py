"""Request and error types shared by the GitHub stand-in's endpoint handlers."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Request

from sandbox.credentials import InstallationToken
from sandbox.payloads import DOCUMENTATION_URL, HostedRepository, Links

if TYPE_CHECKING:
    from sandbox.github import GitHubSandbox


class ApiError(Exception):
    """An error response with GitHub's ``{"message", "documentation_url"}`` body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """Return the JSON body of the error response."""
        body: dict[str, Any] = {
            "message": self.message,
            "documentation_url": DOCUMENTATION_URL,
            "status": str(self.status),
        }
        if self.errors is not None:
            body["errors"] = self.errors

        return body


@dataclasses.dataclass(frozen=True)
class ApiRequest:
    """One authenticated API request, with its path parameters resolved."""

    http: Request
    params: dict[str, str]
    links: Links
    repo: HostedRepository | None = None
    token: InstallationToken | None = None

    def json(self) -> dict[str, Any]:
        """Return the JSON object in the body.

        Raises:
            ApiError: 400 when the body is not a JSON object, as on GitHub.
        """
        try:
            body = json.loads(self.http.get_data() or b"{}")
        except ValueError:
            body = None

        if not isinstance(body, dict):
            raise ApiError(400, "Problems parsing JSON")

        return body

    def hosted(self) -> HostedRepository:
        """Return the repository named in the path."""
        if (
            self.repo is None
        ):  # pragma: no cover - routes without a repo never call this.
            raise RuntimeError("This route has no repository in its path.")

        return self.repo


@dataclasses.dataclass(frozen=True)
class Reply:
    """A successful JSON response."""

    status: int
    body: Any
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


Handler = Callable[["GitHubSandbox", ApiRequest], Reply]


@dataclasses.dataclass(frozen=True)
class Route:
    """An endpoint: method, OpenAPI path template, credentials and handler.

    ``auth`` is ``"jwt"`` for endpoints that take the App's JWT and
    ``"token"`` for those that take an installation token.
    """

    method: str
    template: str
    auth: str
    handler: Handler

    @property
    def endpoint(self) -> str:
        """Return the endpoint as GitHub's docs name it: ``PATCH /repos/...``."""
        return f"{self.method} {self.template}"


def require(body: dict[str, Any], key: str, kind: type) -> Any:
    """Return ``body[key]`` if it has type ``kind``, else raise GitHub's 422."""
    if key not in body or body[key] is None:
        raise ApiError(422, f'Invalid request.\n\n"{key}" wasn\'t supplied.')

    value = body[key]
    # bool is a subclass of int, so a JSON true must not pass as a number.
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        expected = _JSON_TYPES.get(kind, "an object")
        raise ApiError(
            422,
            f"Invalid request.\n\nFor '{key}', {json.dumps(value)} is not {expected}.",
        )

    return value


_JSON_TYPES = {str: "a string", bool: "a boolean", int: "an integer", list: "an array"}
