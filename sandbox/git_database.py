"""Repository, tree, commit and tag endpoints, served from a bare repository.

Each handler validates the request as GitHub does, returning 422 with
GitHub's message where the client sent something git cannot store, and
works through ``BareRepository``. None of these endpoints moves a ref.
"""

from __future__ import annotations

import datetime
import re
from typing import TYPE_CHECKING, Any

from sandbox import payloads
from sandbox.api import ApiError, ApiRequest, Reply, Route, require
from sandbox.git import BareRepository, Signature, TreeEntry
from sandbox.git_objects import TREE_MODES, split_tree_path

if TYPE_CHECKING:
    from sandbox.github import GitHubSandbox

OBJECT_ID = re.compile(r"[0-9a-f]{40}")


def repository_of(sandbox: GitHubSandbox, request: ApiRequest) -> BareRepository:
    """Return the bare repository named in the request's path."""
    return sandbox.repository(request.hosted().full_name)


def get_repository(sandbox: GitHubSandbox, request: ApiRequest) -> Reply:
    """Serve ``GET /repos/{owner}/{repo}``."""
    return Reply(200, payloads.repository(request.links, request.hosted()))


def create_tree(sandbox: GitHubSandbox, request: ApiRequest) -> Reply:
    """Serve ``POST /repos/{owner}/{repo}/git/trees``.

    Entries carry inline ``content`` or an object ``sha``; ``sha: null``
    deletes a path of ``base_tree``. Nested paths create the subtrees.
    """
    git = repository_of(sandbox, request)
    body = request.json()
    items = require(body, "tree", list)
    files: dict[str, TreeEntry] = {}
    base_tree = body.get("base_tree")
    if base_tree is not None:
        if not isinstance(base_tree, str) or git.object_type(base_tree) != "tree":
            raise ApiError(
                422, f"base_tree {base_tree!r} is not a tree in this repository."
            )

        files = {entry.path: entry for entry in git.read_tree_recursive(base_tree)}

    for index, item in enumerate(items):
        _apply_tree_item(git, files, index, item)

    try:
        sha = git.write_tree(files.values())
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None

    tree = payloads.git_tree(request.links, request.hosted(), sha, git.read_tree(sha))
    return Reply(201, tree, {"Location": tree["url"]})


def _apply_tree_item(
    git: BareRepository, files: dict[str, TreeEntry], index: int, item: Any
) -> None:
    if not isinstance(item, dict):
        raise ApiError(422, f"Tree entry {index} must be an object.")

    path, mode = item.get("path"), item.get("mode")
    kind = item.get("type", TREE_MODES.get(str(mode)))
    where = f"Tree entry {index} ({path!r})"
    if not isinstance(path, str):
        raise ApiError(422, f"Tree entry {index} needs a 'path' string.")

    try:
        split_tree_path(path)
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None

    if mode not in TREE_MODES or TREE_MODES[mode] != kind:
        raise ApiError(
            422,
            f"{where} has mode {mode!r} and type {kind!r}, which do not match: "
            f"expected one of {TREE_MODES}.",
        )

    content, sha = item.get("content"), item.get("sha")
    if content is not None and "sha" in item:
        raise ApiError(422, f"{where} has both 'content' and 'sha'; send only one.")

    # Replacing a path also replaces whatever was stored under it as a directory.
    for existing in [key for key in files if key == path or key.startswith(path + "/")]:
        del files[existing]

    for existing in [key for key in files if path.startswith(key + "/")]:
        del files[existing]

    if content is not None:
        if not isinstance(content, str) or kind != "blob":
            raise ApiError(422, f"{where} has 'content', which needs type 'blob'.")

        files[path] = TreeEntry(path, git.write_blob(content.encode()), mode)
    elif sha is None:
        if "sha" not in item:
            raise ApiError(422, f"{where} needs either 'content' or 'sha'.")
    elif not isinstance(sha, str) or not OBJECT_ID.fullmatch(sha):
        raise ApiError(422, f"{where} has an invalid 'sha' {sha!r}.")
    elif kind == "tree":
        _check_object(git, sha, "tree", where)
        for entry in git.read_tree_recursive(sha):
            files[f"{path}/{entry.path}"] = TreeEntry(
                f"{path}/{entry.path}", entry.sha, entry.mode
            )
    else:
        if kind == "blob":
            _check_object(git, sha, "blob", where)

        files[path] = TreeEntry(path, sha, mode)


def _check_object(git: BareRepository, sha: str, expected: str, where: str) -> None:
    actual = git.object_type(sha)
    if actual != expected:
        found = "no object" if actual is None else f"a {actual}"
        raise ApiError(422, f"{where}: {sha} is {found}, not a {expected}.")


def get_tree(sandbox: GitHubSandbox, request: ApiRequest) -> Reply:
    """Serve ``GET /repos/{owner}/{repo}/git/trees/{tree_sha}``."""
    git = repository_of(sandbox, request)
    sha = request.params["tree_sha"]
    if git.object_type(sha) != "tree":
        raise ApiError(404, "Not Found")

    if request.http.args.get("recursive") not in (None, "", "0", "false"):
        entries = git.read_tree_recursive(sha, include_trees=True)
    else:
        entries = git.read_tree(sha)

    return Reply(200, payloads.git_tree(request.links, request.hosted(), sha, entries))


def _identity(
    body: dict[str, Any], key: str, default: Signature, now: datetime.datetime
) -> Signature:
    value = body.get(key)
    if value is None:
        return default

    if not isinstance(value, dict):
        raise ApiError(422, f"Invalid request.\n\n'{key}' must be an object.")

    name = require(value, "name", str)
    email = require(value, "email", str)
    date = now
    if value.get("date") is not None:
        date = _parse_date(key, value["date"])

    try:
        signature = Signature(name, email, date)
        signature.to_git()
    except ValueError as exc:
        raise ApiError(422, f"Invalid request.\n\n{exc}") from None

    return signature


def _parse_date(key: str, value: Any) -> datetime.datetime:
    try:
        date = datetime.datetime.fromisoformat(str(value))
    except ValueError:
        raise ApiError(
            422,
            f"Invalid request.\n\n{key}.date {value!r} is not an ISO 8601 "
            "timestamp such as '2024-05-01T12:00:00Z'.",
        ) from None

    # GitHub reads a timestamp without an offset as UTC.
    return date if date.tzinfo else date.replace(tzinfo=datetime.UTC)


def create_commit(sandbox: GitHubSandbox, request: ApiRequest) -> Reply:
    """Serve ``POST /repos/{owner}/{repo}/git/commits``.

    Without ``author`` the App's bot is the author; without ``committer`` the
    author is the committer, as GitHub documents.
    """
    git = repository_of(sandbox, request)
    body = request.json()
    message = require(body, "message", str)
    tree = require(body, "tree", str)
    parents = body.get("parents") or []
    if git.object_type(tree) != "tree":
        raise ApiError(422, "Tree SHA does not exist")

    if not isinstance(parents, list) or not all(
        isinstance(parent, str) and git.object_type(parent) == "commit"
        for parent in parents
    ):
        raise ApiError(422, "Parent SHA does not exist or is not a commit object")

    now = datetime.datetime.now(datetime.UTC)
    bot = Signature(f"{sandbox.app_slug}[bot]", "bot@example.com", now)
    author = _identity(body, "author", bot, now)
    committer = _identity(body, "committer", author, now)
    sha = git.commit_tree(tree, parents, message, author, committer)
    commit = payloads.git_commit(request.links, request.hosted(), git.read_commit(sha))
    return Reply(201, commit, {"Location": commit["url"]})


def get_commit(sandbox: GitHubSandbox, request: ApiRequest) -> Reply:
    """Serve ``GET /repos/{owner}/{repo}/git/commits/{commit_sha}``."""
    git = repository_of(sandbox, request)
    sha = request.params["commit_sha"]
    if git.object_type(sha) != "commit":
        raise ApiError(404, "Not Found")

    commit = git.read_commit(sha)
    return Reply(200, payloads.git_commit(request.links, request.hosted(), commit))


def create_tag(sandbox: GitHubSandbox, request: ApiRequest) -> Reply:
    """Serve ``POST /repos/{owner}/{repo}/git/tags``: an annotated tag object.

    This creates no ref: the client creates ``refs/tags/<tag>`` afterwards.
    """
    git = repository_of(sandbox, request)
    body = request.json()
    name = require(body, "tag", str)
    message = require(body, "message", str)
    target = require(body, "object", str)
    object_type = require(body, "type", str)
    if object_type not in {"commit", "tree", "blob"}:
        raise ApiError(
            422, f"Tag type {object_type!r} is invalid: use commit, tree or blob."
        )

    actual = git.object_type(target)
    if actual is None:
        raise ApiError(422, "Object does not exist")

    if actual != object_type:
        raise ApiError(422, f"Object {target} is a {actual}, not a {object_type}.")

    now = datetime.datetime.now(datetime.UTC)
    bot = Signature(f"{sandbox.app_slug}[bot]", "bot@example.com", now)
    tagger = _identity(body, "tagger", bot, now)
    try:
        sha = git.mktag(target, object_type, name, message, tagger)
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None

    tag = payloads.git_tag(request.links, request.hosted(), git.read_tag(sha))
    return Reply(201, tag, {"Location": tag["url"]})


def get_tag(sandbox: GitHubSandbox, request: ApiRequest) -> Reply:
    """Serve ``GET /repos/{owner}/{repo}/git/tags/{tag_sha}``."""
    git = repository_of(sandbox, request)
    sha = request.params["tag_sha"]
    if git.object_type(sha) != "tag":
        raise ApiError(404, "Not Found")

    return Reply(
        200, payloads.git_tag(request.links, request.hosted(), git.read_tag(sha))
    )


_REPO = "/repos/{owner}/{repo}"
ROUTES = [
    Route("GET", _REPO, "token", get_repository),
    Route("POST", f"{_REPO}/git/trees", "token", create_tree),
    Route("GET", f"{_REPO}/git/trees/{{tree_sha}}", "token", get_tree),
    Route("POST", f"{_REPO}/git/commits", "token", create_commit),
    Route("GET", f"{_REPO}/git/commits/{{commit_sha}}", "token", get_commit),
    Route("POST", f"{_REPO}/git/tags", "token", create_tag),
    Route("GET", f"{_REPO}/git/tags/{{tag_sha}}", "token", get_tag),
]
