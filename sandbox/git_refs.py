"""Ref and compare endpoints, served from a bare repository.

Ref updates are compare-and-swap operations on the ref's old value, so two
concurrent fast-forwards cannot both win, and every ref change sends
webhooks. Forced updates are rejected outright: the app must never rewrite
history. The app reads the compare endpoint to check that a commit is reachable
from the branch head.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sandbox import payloads
from sandbox.api import ApiError, ApiRequest, Reply, Route, require
from sandbox.git import ZERO_SHA, BareRepository
from sandbox.git_database import OBJECT_ID, repository_of

if TYPE_CHECKING:
    from sandbox.github import GitHubSandbox

#: Attempts at a compare-and-swap that keeps losing to other fast-forwards.
_MAX_REF_ATTEMPTS = 10
#: GitHub's compare endpoint lists 250 commits per page unless asked otherwise.
_COMPARE_PAGE_SIZE = 250


def _ref_reply(
    request: ApiRequest, git: BareRepository, ref: str, sha: str, status: int = 200
) -> Reply:
    object_type = git.object_type(sha) or "commit"
    body = payloads.git_ref(request.links, request.hosted(), ref, sha, object_type)
    return Reply(status, body)


def _read_ref(git: BareRepository, ref: str) -> str | None:
    try:
        return git.read_ref(ref)
    except ValueError:
        return None


def get_ref(sandbox: GitHubSandbox, request: ApiRequest) -> Reply:
    """Serve ``GET /repos/{owner}/{repo}/git/ref/{ref}``, e.g. ``heads/main``."""
    git = repository_of(sandbox, request)
    ref = "refs/" + request.params["ref"]
    sha = _read_ref(git, ref)
    if sha is None:
        raise ApiError(404, "Not Found")

    return _ref_reply(request, git, ref, sha)


def list_matching_refs(sandbox: GitHubSandbox, request: ApiRequest) -> Reply:
    """Serve ``GET /repos/{owner}/{repo}/git/matching-refs/{ref}``."""
    git = repository_of(sandbox, request)
    refs = git.list_refs("refs/" + request.params["ref"])
    body = [
        payloads.git_ref(
            request.links, request.hosted(), ref, sha, git.object_type(sha) or "commit"
        )
        for ref, sha in sorted(refs.items())
    ]
    return Reply(200, body)


def update_ref(sandbox: GitHubSandbox, request: ApiRequest) -> Reply:
    """Serve ``PATCH /repos/{owner}/{repo}/git/refs/{ref}`` as a fast-forward only.

    ``force: true`` is rejected and recorded in ``sandbox.forced_updates``.
    """
    git = repository_of(sandbox, request)
    repo = request.hosted()
    ref = "refs/" + request.params["ref"]
    body = request.json()
    sha = require(body, "sha", str)
    force = body.get("force", False)
    if force is True:
        sandbox.record_forced_update(repo.full_name, ref, sha)
        raise ApiError(
            422,
            "Force updates are rejected by the GitHub sandbox: the branch may "
            "only move by fast-forward. Send force: false.",
        )

    _check_target(git, ref, sha)
    current = _read_ref(git, ref)
    if current is None:
        raise ApiError(422, "Reference does not exist")

    for _ in range(_MAX_REF_ATTEMPTS):
        if current == sha:
            return _ref_reply(request, git, ref, sha)

        if not _is_fast_forward(git, current, sha):
            raise ApiError(422, "Update is not a fast forward")

        if git.update_ref(ref, sha, current):
            sandbox.announce_ref_change(repo, ref, current, sha)
            return _ref_reply(request, git, ref, sha)

        current = _read_ref(git, ref) or ZERO_SHA

    raise ApiError(409, "Reference update failed because the ref kept changing.")


def _is_fast_forward(git: BareRepository, old: str, new: str) -> bool:
    old_commit, new_commit = git.peel(old), git.peel(new)
    if old_commit is None or new_commit is None:
        return False

    return git.is_ancestor(old_commit, new_commit)


def _check_target(git: BareRepository, ref: str, sha: str) -> None:
    object_type = git.object_type(sha)
    if object_type is None:
        raise ApiError(422, "Object does not exist")

    if ref.startswith("refs/heads/") and object_type != "commit":
        raise ApiError(
            422,
            f"Object {sha} is a {object_type}, but a branch must point at a commit.",
        )


def create_ref(sandbox: GitHubSandbox, request: ApiRequest) -> Reply:
    """Serve ``POST /repos/{owner}/{repo}/git/refs``."""
    git = repository_of(sandbox, request)
    body = request.json()
    ref = require(body, "ref", str)
    sha = require(body, "sha", str)
    if not ref.startswith("refs/") or ref.count("/") < 2:
        raise ApiError(
            422,
            f"Reference name {ref!r} is invalid: it must be a full name with at "
            "least two slashes, such as 'refs/heads/main'.",
        )

    _check_target(git, ref, sha)
    try:
        created = git.update_ref(ref, sha, ZERO_SHA)
    except ValueError:
        raise ApiError(
            422, f"Reference name {ref!r} is not a valid ref name."
        ) from None

    if not created:
        raise ApiError(422, "Reference already exists")

    sandbox.announce_ref_change(request.hosted(), ref, ZERO_SHA, sha)
    reply = _ref_reply(request, git, ref, sha, status=201)
    reply.headers["Location"] = reply.body["url"]
    return reply


def _resolve_commit(git: BareRepository, name: str) -> str | None:
    if OBJECT_ID.fullmatch(name):
        return git.peel(name)

    candidates = [name] if name.startswith("refs/") else []
    candidates += [f"refs/heads/{name}", f"refs/tags/{name}"]
    for ref in candidates:
        sha = _read_ref(git, ref)
        if sha is not None:
            return git.peel(sha)

    return None


def compare(sandbox: GitHubSandbox, request: ApiRequest) -> Reply:
    """Serve ``GET /repos/{owner}/{repo}/compare/{basehead}`` for ``base...head``.

    ``base`` and ``head`` may be commit ids, branch or tag names. Commits are
    listed oldest first in pages of ``per_page`` (default 250); ``files`` is
    always empty because the sandbox does not compute diffs.
    """
    git = repository_of(sandbox, request)
    repo = request.hosted()
    base_name, separator, head_name = request.params["basehead"].partition("...")
    base = _resolve_commit(git, base_name) if separator else None
    head = _resolve_commit(git, head_name) if separator else None
    if base is None or head is None:
        raise ApiError(404, "Not Found")

    merge_base = git.merge_base(base, head)
    if merge_base is None:
        raise ApiError(404, f"No common ancestor between {base_name} and {head_name}.")

    ahead_by = git.count_commits(base, head)
    behind_by = git.count_commits(head, base)
    status = "diverged"
    if ahead_by == 0 and behind_by == 0:
        status = "identical"
    elif behind_by == 0:
        status = "ahead"
    elif ahead_by == 0:
        status = "behind"

    try:
        per_page = int(request.http.args.get("per_page", _COMPARE_PAGE_SIZE))
        page = int(request.http.args.get("page", 1))
    except ValueError:
        raise ApiError(400, "Invalid 'per_page' or 'page' parameter.") from None

    per_page, page = max(1, per_page), max(1, page)
    listed = git.list_commits(base, head)[(page - 1) * per_page : page * per_page]
    links = request.links
    html = links.html(f"/{repo.full_name}/compare/{base_name}...{head_name}")
    body = {
        "url": links.repo(repo, f"/compare/{base_name}...{head_name}"),
        "html_url": html,
        "permalink_url": links.html(f"/{repo.full_name}/compare/{base}...{head}"),
        "diff_url": f"{html}.diff",
        "patch_url": f"{html}.patch",
        "base_commit": payloads.commit_summary(links, repo, git.read_commit(base)),
        "merge_base_commit": payloads.commit_summary(
            links, repo, git.read_commit(merge_base)
        ),
        "status": status,
        "ahead_by": ahead_by,
        "behind_by": behind_by,
        "total_commits": ahead_by,
        "commits": [
            payloads.commit_summary(links, repo, git.read_commit(sha)) for sha in listed
        ],
        "files": [],
    }
    return Reply(200, body)


_REPO = "/repos/{owner}/{repo}"
def list_commits(sandbox: GitHubSandbox, request: ApiRequest) -> Reply:
    """Serve ``GET /repos/{owner}/{repo}/commits``: history of ``sha``, newest first.

    ``sha`` may be a commit id, branch or tag name (default: the default branch).
    Pages hold ``per_page`` commits (default 30, at most 100), as on GitHub.
    """
    git = repository_of(sandbox, request)
    repo = request.hosted()
    start = request.http.args.get("sha") or sandbox.branch
    head = _resolve_commit(git, start)
    if head is None:
        raise ApiError(404, f"No commit found for SHA: {start}")

    try:
        per_page = min(100, max(1, int(request.http.args.get("per_page", 30))))
        page = max(1, int(request.http.args.get("page", 1)))
    except ValueError:
        raise ApiError(400, "Invalid 'per_page' or 'page' parameter.") from None

    newest_first = list(reversed(git.list_commits(None, head)))
    listed = newest_first[(page - 1) * per_page : page * per_page]
    body = [
        payloads.commit_summary(request.links, repo, git.read_commit(sha))
        for sha in listed
    ]
    return Reply(200, body)


ROUTES = [
    Route("GET", f"{_REPO}/git/ref/{{ref}}", "token", get_ref),
    Route("GET", f"{_REPO}/git/matching-refs/{{ref}}", "token", list_matching_refs),
    Route("POST", f"{_REPO}/git/refs", "token", create_ref),
    Route("PATCH", f"{_REPO}/git/refs/{{ref}}", "token", update_ref),
    Route("GET", f"{_REPO}/compare/{{basehead}}", "token", compare),
    Route("GET", f"{_REPO}/commits", "token", list_commits),
]
