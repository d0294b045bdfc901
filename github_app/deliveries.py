"""The App's webhook delivery log on GitHub: list attempts, redeliver failed ones.

GitHub keeps an App's deliveries for 3 days and lists them newest first at
``GET /app/hook/deliveries``, one entry per attempt. A redelivery is a new
attempt with the GUID of the original. ``POST .../deliveries/{id}/attempts``
requests that GitHub send an attempt again. Both need the App's JWT.
https://docs.github.com/en/rest/apps/webhooks#list-deliveries-for-an-app-webhook
"""

import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
import structlog

from github_app.github import GitHubClient

logger = structlog.get_logger(__name__)

#: GitHub keeps deliveries for 3 days, so nothing older can be redelivered.
# https://docs.github.com/en/webhooks/testing-and-troubleshooting-webhooks/redelivering-webhooks
RETENTION = timedelta(days=3)
#: The largest page GitHub serves.
PAGE_SIZE = 100
#: A 409 attempt found another attempt of the same GUID in progress; that other
#: attempt carries the real outcome.
IN_PROGRESS_STATUS = 409

_SINCE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


@dataclass(frozen=True)
class Attempt:
    """One delivery attempt as GitHub lists it."""

    id: int
    guid: str
    event: str
    action: str | None
    status_code: int
    status: str
    delivered_at: datetime
    redelivery: bool

    @property
    def succeeded(self) -> bool:
        return 200 <= self.status_code < 300

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> "Attempt":
        delivered_at = datetime.fromisoformat(
            item["delivered_at"].replace("Z", "+00:00")
        )
        return cls(
            id=int(item["id"]),
            guid=str(item["guid"]),
            event=str(item["event"]),
            action=item.get("action"),
            status_code=int(item.get("status_code") or 0),
            status=str(item.get("status") or ""),
            delivered_at=delivered_at,
            redelivery=bool(item.get("redelivery")),
        )


def parse_since(text: str) -> timedelta:
    """Parse a period such as ``24h``, ``90m`` or ``3d`` (at most 3 days).

    Raises:
        ValueError: the text is not a number followed by s, m, h or d, or is
            longer than GitHub keeps deliveries.
    """
    match = _SINCE.match(text.strip())
    if match is None:
        raise ValueError(
            f"--since must be a number followed by s, m, h or d, such as 24h; "
            f"got {text!r}."
        )

    period = timedelta(**{_UNITS[match[2]]: int(match[1])})
    if period > RETENTION:
        raise ValueError(
            f"--since {text} reaches further back than the 3 days GitHub keeps "
            "deliveries: use 3d or less."
        )

    return period


def list_attempts(github: GitHubClient, *, since: datetime) -> list[Attempt]:
    """Return the App's delivery attempts made at or after ``since``, newest first.

    Raises:
        GitHubUnavailableError, GitHubResponseError: GitHub failed.
    """
    attempts = []
    for item in _pages(github):
        attempt = Attempt.from_json(item)
        if attempt.delivered_at < since:
            break
        attempts.append(attempt)

    return attempts


def _pages(github: GitHubClient) -> Iterator[dict[str, Any]]:
    parameters: dict[str, Any] = {"per_page": PAGE_SIZE}
    while True:
        headers, items = github.request_as_app(
            "GET", "/app/hook/deliveries", parameters
        )
        yield from items
        cursor = _next_cursor(headers)
        if cursor is None or not items:
            return
        parameters = {"per_page": PAGE_SIZE, "cursor": cursor}


def _next_cursor(headers: dict[str, Any]) -> str | None:
    """Return the ``cursor`` of the ``rel="next"`` page in the Link header."""
    link = next((v for k, v in headers.items() if k.lower() == "link"), None)
    if not link:
        return None

    for entry in requests.utils.parse_header_links(link):
        if entry.get("rel") == "next":
            query = urllib.parse.urlsplit(entry["url"]).query
            cursors = urllib.parse.parse_qs(query).get("cursor")
            return cursors[0] if cursors else None

    return None


def choose_failed(attempts: list[Attempt]) -> list[Attempt]:
    """Return, per GUID, the last failed attempt with no success after it.

    A GUID whose latest attempt succeeded is done. 409 responses are left out:
    they mean another attempt of the same GUID was being handled, and that
    attempt's own status shows whether the delivery succeeded. The result is
    oldest first, so deliveries are sent again in their original order.
    """
    latest: dict[str, Attempt] = {}
    for attempt in sorted(attempts, key=lambda item: (item.delivered_at, item.id)):
        if attempt.status_code != IN_PROGRESS_STATUS:
            latest[attempt.guid] = attempt

    failed = [attempt for attempt in latest.values() if not attempt.succeeded]
    return sorted(failed, key=lambda item: (item.delivered_at, item.id))


def redeliver(github: GitHubClient, attempt: Attempt) -> None:
    """Ask GitHub to send ``attempt`` again; it arrives with the same GUID.

    Raises:
        GitHubUnavailableError, GitHubResponseError: GitHub failed.
    """
    github.request_as_app("POST", f"/app/hook/deliveries/{attempt.id}/attempts")
    logger.info("Requested redelivery", delivery_id=attempt.guid, attempt_id=attempt.id)


def now() -> datetime:
    return datetime.now(UTC)
