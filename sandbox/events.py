"""Payloads of the ``push`` and ``create`` webhook events.

Shapes follow the ``webhook-push`` and ``webhook-create`` schemas of
``@octokit/openapi-webhooks``. As on GitHub, the ``repository`` object of a
``push`` payload carries ``created_at`` and ``pushed_at`` as Unix timestamps,
while ``create`` uses ISO 8601 strings.
"""

from __future__ import annotations

import datetime
from typing import Any

from sandbox.git import ZERO_SHA, BareRepository
from sandbox.git_objects import Commit
from sandbox.payloads import (
    HostedRepository,
    Links,
    account,
    isoformat,
    node_id,
    repository,
)

#: GitHub lists at most 2048 commits in a push payload.
MAX_PUSH_COMMITS = 2048


def ref_change_events(
    links: Links,
    repo: HostedRepository,
    git: BareRepository,
    *,
    ref: str,
    before: str,
    after: str,
    sender: dict[str, Any],
    installation_id: int,
) -> list[tuple[str, dict[str, Any]]]:
    """Return the ``(event, payload)`` pairs that a ref change causes.

    Every ref change causes a ``push``, and a new ref also a ``create``.
    """
    branch_ref = f"refs/heads/{repo.default_branch}"
    peeled = git.peel(after)
    head_commit = None
    if peeled is not None:
        head = git.read_commit(peeled)
        head_commit = push_commit(links, repo, head, git.changed_paths(peeled))

    commits = []
    base_ref = None
    if ref.startswith("refs/tags/"):
        # NOTE: GitHub does not document when it fills base_ref for a tag, so
        # the sandbox names the default branch only when its head is the tag's
        # commit.
        if peeled is not None and peeled == git.read_ref(branch_ref):
            base_ref = branch_ref
    elif peeled is not None:
        base = None if before == ZERO_SHA else before
        for sha in git.list_commits(base, peeled)[-MAX_PUSH_COMMITS:]:
            commit = git.read_commit(sha)
            commits.append(push_commit(links, repo, commit, git.changed_paths(sha)))

    push = push_payload(
        links,
        repo,
        ref=ref,
        before=before,
        after=after,
        forced=_is_forced(git, before, after),
        base_ref=base_ref,
        commits=commits,
        head_commit=head_commit,
        sender=sender,
        installation_id=installation_id,
    )
    if before != ZERO_SHA:
        return [("push", push)]

    create = create_payload(
        links,
        repo,
        ref=ref.split("/", 2)[2],
        ref_type="tag" if ref.startswith("refs/tags/") else "branch",
        sender=sender,
        installation_id=installation_id,
    )
    return [("push", push), ("create", create)]


def _is_forced(git: BareRepository, before: str, after: str) -> bool:
    """Return whether a ref moved to a commit that does not descend from its old one.

    Creating or deleting a ref is not a forced update.
    """
    if ZERO_SHA in (before, after):
        return False

    old, new = git.peel(before), git.peel(after)
    if old is None or new is None:
        return True

    return not git.is_ancestor(old, new)


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
    forced: bool = False,
    base_ref: str | None,
    commits: list[dict[str, Any]],
    head_commit: dict[str, Any] | None,
    sender: dict[str, Any],
    installation_id: int,
) -> dict[str, Any]:
    """Return a ``push`` payload for a ref that moved from ``before`` to ``after``."""
    pushed_at = datetime.datetime.now(datetime.UTC)
    if before == ZERO_SHA:
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
        "created": before == ZERO_SHA,
        "deleted": after == ZERO_SHA,
        "forced": forced,
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
