"""Endpoints that a GitHub App calls with its JWT.

These find the App's installation, mint installation tokens, and read and
redeliver the App's webhook deliveries, in the shapes of GitHub's "Apps" and
"Webhooks" REST endpoints.
"""

from __future__ import annotations

import datetime
import urllib.parse
from typing import TYPE_CHECKING, Any

from sandbox.api import ApiError, ApiRequest, Reply, Route
from sandbox.payloads import account, isoformat, node_id, repository

if TYPE_CHECKING:
    from sandbox.github import GitHubSandbox

#: Permissions of the installation: commits and refs, and repository metadata.
PERMISSIONS = {"contents": "write", "metadata": "read"}
EVENTS = ["create", "push"]
_DEFAULT_PAGE_SIZE = 30
_MAX_PAGE_SIZE = 100
_CREATED_AT = "2024-01-01T00:00:00Z"
_STATUS_RANGES = {"success": (200, 399), "failure": (400, 599)}


def _app_id_number(sandbox: GitHubSandbox) -> int:
    return int(sandbox.app_id) if sandbox.app_id.isdigit() else 1


def get_app(sandbox: GitHubSandbox, request: ApiRequest) -> Reply:
    """Serve ``GET /app``: the authenticated App."""
    links = request.links
    owner = sandbox.repositories[0].owner if sandbox.repositories else "sandbox"
    body = {
        "id": _app_id_number(sandbox),
        "slug": sandbox.app_slug,
        "node_id": node_id("Integration", sandbox.app_id),
        "client_id": f"Iv1.{sandbox.app_id}",
        "owner": account(links, owner, 1, "Organization"),
        "name": sandbox.app_slug,
        "description": "GitHub App served by the local sandbox.",
        "external_url": links.html("/"),
        "html_url": links.html(f"/apps/{sandbox.app_slug}"),
        "created_at": _CREATED_AT,
        "updated_at": _CREATED_AT,
        "permissions": dict(PERMISSIONS),
        "events": list(EVENTS),
        "installations_count": 1,
    }
    return Reply(200, body)


def _installation(sandbox: GitHubSandbox, request: ApiRequest) -> dict[str, Any]:
    links = request.links
    owner = sandbox.repositories[0].owner if sandbox.repositories else "sandbox"
    installation_id = sandbox.installation_id
    return {
        "id": installation_id,
        "account": account(links, owner, 1, "Organization"),
        "repository_selection": "selected",
        "access_tokens_url": links.api(
            f"/app/installations/{installation_id}/access_tokens"
        ),
        "repositories_url": links.api("/installation/repositories"),
        "html_url": links.html(f"/organizations/{owner}/settings/installations"),
        "app_id": _app_id_number(sandbox),
        "client_id": f"Iv1.{sandbox.app_id}",
        "app_slug": sandbox.app_slug,
        "target_id": 1,
        "target_type": "Organization",
        "permissions": dict(PERMISSIONS),
        "events": list(EVENTS),
        "created_at": _CREATED_AT,
        "updated_at": _CREATED_AT,
        "single_file_name": None,
        "has_multiple_single_files": False,
        "single_file_paths": [],
        "suspended_by": None,
        "suspended_at": None,
    }


def _check_installation(sandbox: GitHubSandbox, request: ApiRequest) -> None:
    if request.params["installation_id"] != str(sandbox.installation_id):
        raise ApiError(404, "Not Found")


def get_repo_installation(sandbox: GitHubSandbox, request: ApiRequest) -> Reply:
    """Serve ``GET /repos/{owner}/{repo}/installation``."""
    return Reply(200, _installation(sandbox, request))


def list_installations(sandbox: GitHubSandbox, request: ApiRequest) -> Reply:
    """Serve ``GET /app/installations``."""
    return Reply(200, [_installation(sandbox, request)])


def get_installation(sandbox: GitHubSandbox, request: ApiRequest) -> Reply:
    """Serve ``GET /app/installations/{installation_id}``."""
    _check_installation(sandbox, request)
    return Reply(200, _installation(sandbox, request))


def create_access_token(sandbox: GitHubSandbox, request: ApiRequest) -> Reply:
    """Serve ``POST /app/installations/{installation_id}/access_tokens``.

    The optional ``repositories`` (names) and ``permissions`` narrow the token;
    asking for more than the installation has is a 422, as on GitHub.
    """
    _check_installation(sandbox, request)
    body = request.json()
    hosted = {repo.name.lower(): repo for repo in sandbox.repositories}
    names = body.get("repositories") or []
    unknown = [name for name in names if str(name).lower() not in hosted]
    if unknown:
        raise ApiError(
            422, f"There is at least one repository that does not exist: {unknown}."
        )

    chosen = [hosted[str(name).lower()] for name in names] or sandbox.repositories
    permissions = body.get("permissions") or dict(PERMISSIONS)
    if not isinstance(permissions, dict) or not _within(permissions, PERMISSIONS):
        raise ApiError(
            422,
            f"The permissions requested are not granted to this installation: "
            f"requested {permissions!r}, granted {PERMISSIONS!r}.",
        )

    token = sandbox.tokens.issue(
        sandbox.installation_id,
        lifetime=sandbox.token_lifetime,
        repositories=frozenset(repo.full_name.lower() for repo in chosen),
        permissions=dict(permissions),
    )
    expires_at = datetime.datetime.fromtimestamp(token.expires_at, datetime.UTC)
    reply = {
        "token": token.token,
        "expires_at": isoformat(expires_at),
        "permissions": dict(permissions),
        "repository_selection": "selected",
    }
    if names:
        reply["repositories"] = [repository(request.links, repo) for repo in chosen]

    return Reply(201, reply)


def _within(requested: dict[str, Any], granted: dict[str, str]) -> bool:
    levels = {"read": 1, "write": 2}
    for name, level in requested.items():
        if levels.get(str(level), 99) > levels.get(granted.get(name, ""), 0):
            return False

    return True


def list_deliveries(sandbox: GitHubSandbox, request: ApiRequest) -> Reply:
    """Serve ``GET /app/hook/deliveries``, newest first, paged by cursor.

    The cursor names the id of the first delivery on the requested page, and
    the ``Link`` header carries the next page's cursor.
    """
    args = request.http.args
    try:
        per_page = int(args.get("per_page", _DEFAULT_PAGE_SIZE))
        start = int(args["cursor"].removeprefix("v1_")) if "cursor" in args else None
    except ValueError:
        raise ApiError(400, "Invalid 'per_page' or 'cursor' parameter.") from None

    per_page = max(1, min(per_page, _MAX_PAGE_SIZE))
    deliveries = sorted(sandbox.deliveries, key=lambda item: item.id, reverse=True)
    # GitHub's status filter: success is a status code of 200-399, failure
    # 400-599, so a delivery that got no response is in neither.
    status = args.get("status")
    if status in _STATUS_RANGES:
        low, high = _STATUS_RANGES[status]
        deliveries = [item for item in deliveries if low <= item.status_code <= high]

    if start is not None:
        deliveries = [item for item in deliveries if item.id <= start]

    page, rest = deliveries[:per_page], deliveries[per_page:]
    headers = {}
    if rest:
        query = {key: value for key, value in args.items() if key != "cursor"}
        query |= {"per_page": str(per_page), "cursor": f"v1_{rest[0].id}"}
        next_url = request.links.api(
            f"/app/hook/deliveries?{urllib.parse.urlencode(query)}"
        )
        headers["Link"] = f'<{next_url}>; rel="next"'

    return Reply(200, [item.item() for item in page], headers)


def get_delivery(sandbox: GitHubSandbox, request: ApiRequest) -> Reply:
    """Serve ``GET /app/hook/deliveries/{delivery_id}`` with request and response."""
    delivery_id = request.params["delivery_id"]
    delivery = sandbox.webhooks.get(int(delivery_id)) if delivery_id.isdigit() else None
    if delivery is None:
        raise ApiError(404, "Not Found")

    return Reply(200, delivery.detail())


def redeliver(sandbox: GitHubSandbox, request: ApiRequest) -> Reply:
    """Serve ``POST /app/hook/deliveries/{delivery_id}/attempts``.

    The delivery is sent again in the background with its original GUID.
    """
    delivery_id = request.params["delivery_id"]
    if not delivery_id.isdigit() or not sandbox.webhooks.redeliver(int(delivery_id)):
        raise ApiError(404, "Not Found")

    return Reply(202, {})


ROUTES = [
    Route("GET", "/app", "jwt", get_app),
    Route("GET", "/app/installations", "jwt", list_installations),
    Route("GET", "/app/installations/{installation_id}", "jwt", get_installation),
    Route(
        "POST",
        "/app/installations/{installation_id}/access_tokens",
        "jwt",
        create_access_token,
    ),
    Route("GET", "/repos/{owner}/{repo}/installation", "jwt", get_repo_installation),
    Route("GET", "/app/hook/deliveries", "jwt", list_deliveries),
    Route("GET", "/app/hook/deliveries/{delivery_id}", "jwt", get_delivery),
    Route("POST", "/app/hook/deliveries/{delivery_id}/attempts", "jwt", redeliver),
]
