"""Payloads of the ``push`` and ``create`` webhook events.

Shapes follow the ``webhook-push`` and ``webhook-create`` schemas of
``@octokit/openapi-webhooks``. As on GitHub, the ``repository`` object of a
``push`` payload carries ``created_at`` and ``pushed_at`` as Unix timestamps,
while ``create`` uses ISO 8601 strings.
"""

from __future__ import annotations

import datetime
from typing import Any

from sandbox.git_objects import Commit
from sandbox.payloads import (
    HostedRepository,
    Links,
    account,
    isoformat,
    node_id,
    repository,
)


def installation(installation_id: int) -> dict[str, Any]:
    """Return the ``installation`` object that App webhooks carry."""
    return {"id": installation_id, "node_id": node_id("Installation", installation_id)}


def push_repository(
    links: Links, repo: HostedRepository, pushed_at: datetime.datetime
) -> dict[str, Any]:
    """Return the ``repository`` object of a ``push`` payload."""
    body = repository(links, repo)
    body["created_at"] = int(repo.created_at.timestamp())
    body["pushed_at"] = int(pushed_at.timestamp())
    body["updated_at"] = isoformat(pushed_at)
    body["owner"] = body["owner"] | {"name": repo.owner, "email": None}
    body["stargazers"] = 0
    body["master_branch"] = repo.default_branch
    body["organization"] = repo.owner
    return body


def push_commit(
    links: Links, repo: HostedRepository, commit: Commit, changes: dict[str, list[str]]
) -> dict[str, Any]:
    """Return one entry of a ``push`` payload's ``commits`` list."""
    return {
        "id": commit.sha,
        "tree_id": commit.tree,
        "distinct": True,
        "message": commit.message,
        "timestamp": commit.author.date.isoformat(),
        "url": links.html(f"/{repo.full_name}/commit/{commit.sha}"),
        "author": {"name": commit.author.name, "email": commit.author.email},
        "committer": {"name": commit.committer.name, "email": commit.committer.email},
        "added": changes["added"],
        "removed": changes["removed"],
        "modified": changes["modified"],
    }


def push_payload(
    links: Links,
    repo: HostedRepository,
    *,
    ref: str,
    before: str,
    after: str,
    base_ref: str | None,
    commits: list[dict[str, Any]],
    head_commit: dict[str, Any] | None,
    sender: dict[str, Any],
    installation_id: int,
) -> dict[str, Any]:
    """Return a ``push`` payload for a ref that moved from ``before`` to ``after``."""
    zero = "0" * 40
    pushed_at = datetime.datetime.now(datetime.UTC)
    if before == zero:
        compare = links.html(f"/{repo.full_name}/compare/{ref.split('/', 2)[-1]}")
    else:
        compare = links.html(f"/{repo.full_name}/compare/{before[:12]}...{after[:12]}")

    return {
        "ref": ref,
        "before": before,
        "after": after,
        "repository": push_repository(links, repo, pushed_at),
        "pusher": {"name": sender["login"], "email": None},
        "sender": sender,
        "installation": installation(installation_id),
        "created": before == zero,
        "deleted": after == zero,
        "forced": False,
        "base_ref": base_ref,
        "compare": compare,
        "commits": commits,
        "head_commit": head_commit,
    }


def create_payload(
    links: Links,
    repo: HostedRepository,
    *,
    ref: str,
    ref_type: str,
    sender: dict[str, Any],
    installation_id: int,
) -> dict[str, Any]:
    """Return a ``create`` payload for a new branch or tag named ``ref``."""
    return {
        "ref": ref,
        "ref_type": ref_type,
        "master_branch": repo.default_branch,
        "description": None,
        "pusher_type": "user",
        "repository": repository(links, repo),
        "sender": sender,
        "installation": installation(installation_id),
    }


def bot_account(links: Links, app_slug: str, bot_id: int) -> dict[str, Any]:
    """Return the ``sender`` account of changes made with an installation token."""
    return account(links, f"{app_slug}[bot]", bot_id, "Bot")
