"""JSON bodies in the shapes of GitHub's REST API and webhook payloads.

Field names and required fields follow GitHub's published OpenAPI description
(``@octokit/openapi`` for the REST API, ``@octokit/openapi-webhooks`` for the
``push`` and ``create`` payloads). Values that the sandbox does not model,
such as star counts, are fixed placeholders. Every URL points back at the
sandbox's own base URL, with web pages under the same base as the API.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
from typing import Any

from sandbox.git_objects import Commit, Signature, Tag, TreeEntry

DOCUMENTATION_URL = "https://docs.github.com/rest"
#: The ``verification`` object of an unsigned commit or tag.
UNSIGNED = {
    "verified": False,
    "reason": "unsigned",
    "signature": None,
    "payload": None,
    "verified_at": None,
}


def isoformat(date: datetime.datetime) -> str:
    """Format ``date`` in UTC as GitHub does: ``2024-05-01T12:00:00Z``."""
    utc = date.astimezone(datetime.UTC).replace(microsecond=0)
    return utc.isoformat().replace("+00:00", "Z")


def node_id(kind: str, key: object) -> str:
    """Return a stable opaque global node id for an object of ``kind``."""
    return base64.b64encode(f"{kind}:{key}".encode()).decode()


@dataclasses.dataclass(frozen=True)
class HostedRepository:
    """Metadata of one hosted repository, besides its git data."""

    id: int
    owner: str
    name: str
    default_branch: str
    created_at: datetime.datetime

    @property
    def full_name(self) -> str:
        """Return ``owner/name``."""
        return f"{self.owner}/{self.name}"


@dataclasses.dataclass(frozen=True)
class Links:
    """Builder of API and web URLs under the sandbox's base URL."""

    base: str

    def api(self, path: str) -> str:
        """Return the API URL of ``path`` (which starts with ``/``)."""
        return f"{self.base}{path}"

    def html(self, path: str) -> str:
        """Return the web page URL of ``path`` (which starts with ``/``)."""
        return f"{self.base}{path}"

    def repo(self, repo: HostedRepository, path: str = "") -> str:
        """Return the API URL of ``path`` inside ``repo``."""
        return self.api(f"/repos/{repo.full_name}{path}")


def account(links: Links, login: str, account_id: int, kind: str) -> dict[str, Any]:
    """Return a ``simple-user`` object; ``kind`` is User, Organization or Bot."""
    url = links.api(f"/users/{login}")
    return {
        "login": login,
        "id": account_id,
        "node_id": node_id(kind, account_id),
        "avatar_url": links.html(f"/avatars/{login}"),
        "gravatar_id": "",
        "url": url,
        "html_url": links.html(f"/{login}"),
        "followers_url": f"{url}/followers",
        "following_url": f"{url}/following{{/other_user}}",
        "gists_url": f"{url}/gists{{/gist_id}}",
        "starred_url": f"{url}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{url}/subscriptions",
        "organizations_url": f"{url}/orgs",
        "repos_url": f"{url}/repos",
        "events_url": f"{url}/events{{/privacy}}",
        "received_events_url": f"{url}/received_events",
        "type": kind,
        "user_view_type": "public",
        "site_admin": False,
    }


def repository(links: Links, repo: HostedRepository) -> dict[str, Any]:
    """Return a ``full-repository`` object for ``repo``."""
    url = links.repo(repo)
    html_url = links.html(f"/{repo.full_name}")
    created = isoformat(repo.created_at)
    templates = {
        "archive_url": "/{archive_format}{/ref}",
        "assignees_url": "/assignees{/user}",
        "blobs_url": "/git/blobs{/sha}",
        "branches_url": "/branches{/branch}",
        "collaborators_url": "/collaborators{/collaborator}",
        "comments_url": "/comments{/number}",
        "commits_url": "/commits{/sha}",
        "compare_url": "/compare/{base}...{head}",
        "contents_url": "/contents/{+path}",
        "contributors_url": "/contributors",
        "deployments_url": "/deployments",
        "downloads_url": "/downloads",
        "events_url": "/events",
        "forks_url": "/forks",
        "git_commits_url": "/git/commits{/sha}",
        "git_refs_url": "/git/refs{/sha}",
        "git_tags_url": "/git/tags{/sha}",
        "hooks_url": "/hooks",
        "issue_comment_url": "/issues/comments{/number}",
        "issue_events_url": "/issues/events{/number}",
        "issues_url": "/issues{/number}",
        "keys_url": "/keys{/key_id}",
        "labels_url": "/labels{/name}",
        "languages_url": "/languages",
        "merges_url": "/merges",
        "milestones_url": "/milestones{/number}",
        "notifications_url": "/notifications{?since,all,participating}",
        "pulls_url": "/pulls{/number}",
        "releases_url": "/releases{/id}",
        "stargazers_url": "/stargazers",
        "statuses_url": "/statuses/{sha}",
        "subscribers_url": "/subscribers",
        "subscription_url": "/subscription",
        "tags_url": "/tags",
        "teams_url": "/teams",
        "trees_url": "/git/trees{/sha}",
    }
    body: dict[str, Any] = {
        "id": repo.id,
        "node_id": node_id("Repository", repo.id),
        "name": repo.name,
        "full_name": repo.full_name,
        "owner": account(links, repo.owner, repo.id * 10, "Organization"),
        "private": True,
        "html_url": html_url,
        "description": None,
        "fork": False,
        "url": url,
    }
    body |= {key: url + suffix for key, suffix in templates.items()}
    body |= {
        "clone_url": f"{html_url}.git",
        "git_url": f"{html_url}.git",
        "ssh_url": f"{html_url}.git",
        "svn_url": html_url,
        "mirror_url": None,
        "homepage": None,
        "language": None,
        "forks": 0,
        "forks_count": 0,
        "stargazers_count": 0,
        "watchers": 0,
        "watchers_count": 0,
        "size": 0,
        "default_branch": repo.default_branch,
        "open_issues": 0,
        "open_issues_count": 0,
        "is_template": False,
        "topics": [],
        "has_issues": False,
        "has_projects": False,
        "has_wiki": False,
        "has_pages": False,
        "has_downloads": False,
        "has_discussions": False,
        "archived": False,
        "disabled": False,
        "visibility": "private",
        "license": None,
        "pushed_at": created,
        "created_at": created,
        "updated_at": created,
        "allow_forking": False,
        "web_commit_signoff_required": False,
        "network_count": 0,
        "subscribers_count": 0,
    }
    return body


def git_user(signature: Signature) -> dict[str, str]:
    """Return the ``{name, email, date}`` object of a git identity."""
    return {
        "name": signature.name,
        "email": signature.email,
        "date": isoformat(signature.date),
    }


def git_commit(links: Links, repo: HostedRepository, commit: Commit) -> dict[str, Any]:
    """Return a ``git-commit`` object as the Git Data API serves it."""
    return {
        "sha": commit.sha,
        "node_id": node_id("Commit", f"{repo.id}:{commit.sha}"),
        "url": links.repo(repo, f"/git/commits/{commit.sha}"),
        "html_url": links.html(f"/{repo.full_name}/commit/{commit.sha}"),
        "author": git_user(commit.author),
        "committer": git_user(commit.committer),
        "message": commit.message,
        "tree": {
            "sha": commit.tree,
            "url": links.repo(repo, f"/git/trees/{commit.tree}"),
        },
        "parents": [parent_link(links, repo, sha) for sha in commit.parents],
        "verification": dict(UNSIGNED),
    }


def parent_link(links: Links, repo: HostedRepository, sha: str) -> dict[str, str]:
    """Return the ``{sha, url, html_url}`` object that names a parent commit."""
    return {
        "sha": sha,
        "url": links.repo(repo, f"/git/commits/{sha}"),
        "html_url": links.html(f"/{repo.full_name}/commit/{sha}"),
    }


def git_ref(
    links: Links, repo: HostedRepository, ref: str, sha: str, object_type: str
) -> dict[str, Any]:
    """Return a ``git-ref`` object for full ref name ``ref``."""
    kind = {"commit": "commits", "tag": "tags", "tree": "trees", "blob": "blobs"}
    return {
        "ref": ref,
        "node_id": node_id("Ref", f"{repo.id}:{ref}"),
        "url": links.repo(repo, f"/git/{ref}"),
        "object": {
            "type": object_type,
            "sha": sha,
            "url": links.repo(repo, f"/git/{kind[object_type]}/{sha}"),
        },
    }


def git_tag(links: Links, repo: HostedRepository, tag: Tag) -> dict[str, Any]:
    """Return a ``git-tag`` object for an annotated tag."""
    kind = {"commit": "commits", "tag": "tags", "tree": "trees", "blob": "blobs"}
    tagger = git_user(tag.tagger) if tag.tagger else None
    return {
        "node_id": node_id("Tag", f"{repo.id}:{tag.sha}"),
        "tag": tag.tag,
        "sha": tag.sha,
        "url": links.repo(repo, f"/git/tags/{tag.sha}"),
        "message": tag.message,
        "tagger": tagger,
        "object": {
            "sha": tag.object,
            "type": tag.type,
            "url": links.repo(repo, f"/git/{kind[tag.type]}/{tag.object}"),
        },
        "verification": dict(UNSIGNED),
    }


def git_tree(
    links: Links, repo: HostedRepository, sha: str, entries: list[TreeEntry]
) -> dict[str, Any]:
    """Return a ``git-tree`` object listing ``entries``."""
    kind = {"blob": "blobs", "tree": "trees", "commit": "commits"}
    items = []
    for entry in entries:
        item: dict[str, Any] = {
            "path": entry.path,
            "mode": entry.mode,
            "type": entry.type,
            "sha": entry.sha,
        }
        if entry.size is not None:
            item["size"] = entry.size

        if entry.type != "commit":
            item["url"] = links.repo(repo, f"/git/{kind[entry.type]}/{entry.sha}")

        items.append(item)

    return {
        "sha": sha,
        "url": links.repo(repo, f"/git/trees/{sha}"),
        "tree": items,
        "truncated": False,
    }


def commit_summary(
    links: Links, repo: HostedRepository, commit: Commit
) -> dict[str, Any]:
    """Return a ``commit`` object as the compare endpoint lists it.

    The ``author`` and ``committer`` accounts are null because the sandbox
    does not map email addresses to GitHub users.
    """
    url = links.repo(repo, f"/commits/{commit.sha}")
    return {
        "url": url,
        "sha": commit.sha,
        "node_id": node_id("Commit", f"{repo.id}:{commit.sha}"),
        "html_url": links.html(f"/{repo.full_name}/commit/{commit.sha}"),
        "comments_url": f"{url}/comments",
        "commit": {
            "url": links.repo(repo, f"/git/commits/{commit.sha}"),
            "author": git_user(commit.author),
            "committer": git_user(commit.committer),
            "message": commit.message,
            "comment_count": 0,
            "tree": {
                "sha": commit.tree,
                "url": links.repo(repo, f"/git/trees/{commit.tree}"),
            },
            "verification": dict(UNSIGNED),
        },
        "author": None,
        "committer": None,
        "parents": [parent_link(links, repo, sha) for sha in commit.parents],
    }
