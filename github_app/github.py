"""The app's only route to GitHub's REST API.

Callers see this module's exceptions, never those of PyGithub or requests:

- ``GitHubUnavailableError``: GitHub could not be reached or kept failing in a
  transient way (5xx, timeouts, secondary rate limits) until the retry budget ran
  out. The operation may be repeated later.
- ``GitHubResponseError`` and its subclasses: GitHub responded with a permanent
  error (bad credentials, repository not installed, validation failure). Repeating
  the call will not help; the message says what to check.

Authentication goes through PyGithub: an App JWT finds each repository's
installation (once) and mints installation tokens, which ``TokenCache`` reuses until
shortly before they expire. Git data calls go through PyGithub's requester, so all
of them share one retry and error policy.
"""

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import github
import requests
import structlog
from github import Auth, GithubException, GithubIntegration

from github_app.auth import InstallationToken, TokenCache, create_jwt, parse_expires_at
from github_app.config import Settings
from github_app.deadlines import time_left
from github_app.metrics import endpoint_label, observe_github_call, observe_rate_limit

logger = structlog.get_logger(__name__)

T = TypeVar("T")

TRANSIENT_STATUSES = frozenset({500, 502, 503, 504})
#: The first wait between retries, in seconds; it doubles on each attempt.
RETRY_BASE_DELAY = 0.2
RETRY_MAX_DELAY = 2.0
#: Seconds to wait after a secondary rate limit that names no wait of its own.
SECONDARY_RATE_LIMIT_WAIT = 60.0


class GitHubError(Exception):
    """Base class of this module's errors."""


class GitHubUnavailableError(GitHubError):
    """GitHub could not complete the call in time; the call may be repeated."""


class GitHubResponseError(GitHubError):
    """GitHub responded with an error that repeating the call will not fix."""

    def __init__(self, message: str, *, status: int, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class RepositoryNotInstalledError(GitHubResponseError):
    """The App has no installation that covers the repository."""


class NotFastForwardError(GitHubResponseError):
    """The branch moved since the commit's parent was read."""


class ReferenceExistsError(GitHubResponseError):
    """A ref of that name already exists."""


@dataclass(frozen=True)
class Identity:
    """A git author, committer or tagger."""

    name: str
    email: str

    def as_json(self, date: str) -> dict[str, str]:
        return {"name": self.name, "email": self.email, "date": date}


@dataclass(frozen=True)
class CreatedCommit:
    sha: str
    html_url: str


class _AppAuth(Auth.AppAuth):
    """PyGithub App auth that signs each JWT with this app's own claims."""

    def __init__(
        self, app_id: str, private_key: str, clock: Callable[[], float]
    ) -> None:
        super().__init__(app_id, sign_func=lambda payload: "")
        self._private_key = private_key
        self._clock = clock

    def create_jwt(self, expiration: int | None = None) -> str:
        # A fresh JWT for every call, so a long-running worker never sends a stale one.
        return create_jwt(
            app_id=str(self.app_id), private_key=self._private_key, now=self._clock()
        )


def _github_message(exc: GithubException) -> str:
    if isinstance(exc.data, dict) and exc.data.get("message"):
        return str(exc.data["message"])

    return f"HTTP {exc.status}"


def _rate_limit_wait(exc: GithubException, now: float) -> float | None:
    """Return seconds to wait if ``exc`` is a rate limit, else None.

    https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api#exceeding-the-rate-limit
    """
    if exc.status not in (403, 429):
        return None

    headers = {key.lower(): value for key, value in (exc.headers or {}).items()}
    if "retry-after" in headers:
        try:
            return max(0.0, float(headers["retry-after"]))
        except ValueError:
            return RETRY_MAX_DELAY

    if headers.get("x-ratelimit-remaining") == "0" and "x-ratelimit-reset" in headers:
        try:
            return max(0.0, float(headers["x-ratelimit-reset"]) - now)
        except ValueError:
            return RETRY_MAX_DELAY

    # A 429 always means "slow down", even without headers.
    if exc.status == 429:
        return RETRY_MAX_DELAY

    # Only the message distinguishes a secondary rate limit from a permission
    # error, and GitHub requests at least a minute's wait when it sends no header.
    if "secondary rate limit" in _github_message(exc).lower():
        return SECONDARY_RATE_LIMIT_WAIT

    return None


class GitHubClient:
    """Make the REST calls the query flow needs, as the App's installation."""

    def __init__(
        self,
        *,
        app_id: str,
        private_key: str,
        base_url: str,
        timeout: int = 5,
        retry_budget: float = 8.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._base_url = base_url
        self._timeout = timeout
        self._retry_budget = retry_budget
        self._clock = clock
        self._sleep = sleep
        self._integration = GithubIntegration(
            auth=_AppAuth(app_id, private_key, clock),
            base_url=base_url,
            timeout=timeout,
            retry=None,
            seconds_between_requests=None,
            seconds_between_writes=None,
        )
        self._installations: dict[str, int] = {}
        self._tokens = TokenCache(self._mint_token, clock=clock)
        self._clients: dict[str, github.Github] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> "GitHubClient":
        """Build the client the app's settings describe."""
        return cls(
            app_id=settings.github_app_id,
            private_key=settings.github_private_key,
            base_url=settings.github_api_url,
            timeout=settings.http_timeout,
            retry_budget=settings.github_retry_budget,
        )

    # -- authentication -------------------------------------------------------

    def _mint_token(self, installation_id: int) -> InstallationToken:
        authorization = self._with_retries(
            lambda: self._integration.get_access_token(installation_id),
            endpoint=endpoint_label(
                "POST", f"/app/installations/{installation_id}/access_tokens"
            ),
        )
        logger.info("Minted installation token", installation_id=installation_id)
        return InstallationToken(
            token=authorization.token,
            expires_at=parse_expires_at(authorization.expires_at),
        )

    def installation_id(self, repo: str) -> int:
        """Return the id of the App's installation on ``repo``, looked up once.

        Raises:
            RepositoryNotInstalledError: the App is not installed on ``repo``.
            GitHubUnavailableError, GitHubResponseError: as for every call.
        """
        with self._lock:
            if repo in self._installations:
                return self._installations[repo]

        owner, name = repo.split("/", 1)
        try:
            installation = self._with_retries(
                lambda: self._integration.get_repo_installation(owner, name),
                endpoint=endpoint_label("GET", f"/repos/{repo}/installation"),
            )
        except GitHubResponseError as exc:
            if exc.status == 404:
                raise RepositoryNotInstalledError(
                    f"The GitHub App is not installed on {repo}: install it on that "
                    "repository, or remove the repository from QUERY_REPOSITORIES.",
                    status=404,
                    body=exc.body,
                ) from exc
            raise

        with self._lock:
            self._installations[repo] = installation.id

        return installation.id

    def token_permissions(self, repo: str) -> dict[str, str]:
        """Mint an installation token for ``repo`` and return its permissions.

        The token itself is not kept: this is for checking the set-up.

        Raises:
            RepositoryNotInstalledError: the App is not installed on ``repo``.
            GitHubUnavailableError, GitHubResponseError: as for every call.
        """
        installation_id = self.installation_id(repo)
        authorization = self._with_retries(
            lambda: self._integration.get_access_token(installation_id),
            endpoint=endpoint_label(
                "POST", f"/app/installations/{installation_id}/access_tokens"
            ),
        )
        return {str(k): str(v) for k, v in (authorization.permissions or {}).items()}

    def _client_for(self, token: str) -> github.Github:
        with self._lock:
            client = self._clients.get(token)
            if client is None:
                # Tokens are renewed hourly, so at most a few clients are live.
                self._clients = {
                    token: github.Github(
                        auth=Auth.Token(token),
                        base_url=self._base_url,
                        timeout=self._timeout,
                        retry=None,
                        seconds_between_requests=None,
                        seconds_between_writes=None,
                    )
                }
                client = self._clients[token]

        return client

    def request_as_app(
        self, verb: str, path: str, parameters: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], Any]:
        """Call an App endpoint such as ``/app/hook/deliveries`` with the App's JWT.

        Returns the response headers and the decoded JSON body.

        Raises:
            GitHubUnavailableError, GitHubResponseError: as for every call.
        """
        requester = self._integration.requester
        headers, data = self._with_retries(
            lambda: requester.requestJsonAndCheck(verb, path, parameters=parameters),
            endpoint=endpoint_label(verb, path),
        )
        observe_rate_limit("app", headers)
        return dict(headers), data

    # -- the request helper ---------------------------------------------------

    def _with_retries(self, call: Callable[[], T], *, endpoint: str) -> T:
        deadline = self._clock() + self._retry_budget
        attempt = 0
        while True:
            if time_left() == 0:
                raise GitHubUnavailableError(
                    "The time budget for responding to GitHub's webhook delivery ran "
                    f"out after {attempt} attempts."
                )

            try:
                result = call()
                observe_github_call(endpoint, "2xx")
                return result
            except GithubException as exc:
                observe_github_call(endpoint, exc.status)
                wait = _rate_limit_wait(exc, self._clock())
                if wait is None and exc.status not in TRANSIENT_STATUSES:
                    raise GitHubResponseError(
                        f"GitHub responded {exc.status}: {_github_message(exc)}",
                        status=exc.status,
                        body=exc.data,
                    ) from exc
                reason = f"GitHub responded {exc.status}: {_github_message(exc)}"
            except requests.RequestException as exc:
                observe_github_call(endpoint, "unreachable")
                wait = None
                reason = f"GitHub could not be reached: {type(exc).__name__}"

            attempt += 1
            if wait is None:
                delay = min(RETRY_MAX_DELAY, RETRY_BASE_DELAY * 2 ** (attempt - 1))
                wait = delay * random.uniform(0.5, 1.0)

            left = time_left()
            if self._clock() + wait >= deadline or (left is not None and wait >= left):
                raise GitHubUnavailableError(
                    f"{reason}; gave up after {attempt} attempts."
                )

            logger.warning("Retrying GitHub call", reason=reason, attempt=attempt)
            self._sleep(wait)

    def _request(
        self, repo: str, verb: str, path: str, body: dict[str, Any] | None = None
    ) -> Any:
        url = f"/repos/{repo}{path}"
        renewed = False
        while True:
            installation_id, token = self._installation_token(repo)
            client = self._client_for(token)
            try:
                headers, data = self._with_retries(
                    lambda: client.requester.requestJsonAndCheck(verb, url, input=body),
                    endpoint=endpoint_label(verb, url),
                )
                observe_rate_limit(str(installation_id), headers)
                return data
            except GitHubResponseError as exc:
                # A token can be revoked before its stated expiry: renew it once.
                if exc.status != 401 or renewed:
                    raise
                logger.warning(
                    "Installation token rejected, renewing it",
                    installation_id=installation_id,
                )
                self._tokens.invalidate(installation_id, token)
                renewed = True

    def _installation_token(self, repo: str) -> tuple[int, str]:
        """Return the repository's installation id and a token for it.

        A 404 when minting means the App was reinstalled under a new id, so the
        installation is looked up again once.
        """
        installation_id = self.installation_id(repo)
        try:
            return installation_id, self._tokens.get(installation_id)
        except GitHubResponseError as exc:
            if exc.status != 404:
                raise

        logger.warning(
            "Installation not found, looking it up again",
            installation_id=installation_id,
            repo=repo,
        )
        with self._lock:
            self._installations.pop(repo, None)
        installation_id = self.installation_id(repo)
        return installation_id, self._tokens.get(installation_id)

    # -- git data -------------------------------------------------------------

    def get_ref(self, repo: str, ref: str) -> tuple[str, str] | None:
        """Return ``(object_type, sha)`` of ``ref`` (e.g. ``heads/main``), or None."""
        try:
            data = self._request(repo, "GET", f"/git/ref/{ref}")
        except GitHubResponseError as exc:
            if exc.status == 404:
                return None
            raise

        return data["object"]["type"], data["object"]["sha"]

    def get_branch_head(self, repo: str, branch: str) -> str:
        """Return the SHA of the branch head.

        Raises:
            GitHubResponseError: the branch does not exist.
        """
        found = self.get_ref(repo, f"heads/{branch}")
        if found is None:
            raise GitHubResponseError(
                f"The branch {branch!r} does not exist in {repo}: create it, or set "
                "QUERY_BRANCH to an existing branch.",
                status=404,
            )

        return found[1]

    def create_tree(self, repo: str, files: dict[str, str]) -> str:
        """Create a tree holding exactly ``files`` (path to text) and return its SHA."""
        entries = [
            {"path": path, "mode": "100644", "type": "blob", "content": content}
            for path, content in sorted(files.items())
        ]
        data = self._request(repo, "POST", "/git/trees", {"tree": entries})
        return str(data["sha"])

    def create_commit(
        self,
        repo: str,
        *,
        message: str,
        tree: str,
        parent: str,
        author: Identity,
        committer: Identity,
        date: str,
    ) -> CreatedCommit:
        """Create a commit object (no ref moves) and return its SHA and web URL."""
        body = {
            "message": message,
            "tree": tree,
            "parents": [parent],
            "author": author.as_json(date),
            "committer": committer.as_json(date),
        }
        data = self._request(repo, "POST", "/git/commits", body)
        return CreatedCommit(sha=data["sha"], html_url=data.get("html_url", ""))

    def fast_forward(self, repo: str, branch: str, sha: str) -> None:
        """Move the branch to ``sha`` if that is a fast-forward; never force.

        Raises:
            NotFastForwardError: the branch moved since ``sha``'s parent was read.
        """
        try:
            self._request(
                repo, "PATCH", f"/git/refs/heads/{branch}", {"sha": sha, "force": False}
            )
        except GitHubResponseError as exc:
            if exc.status == 422 and "fast forward" in str(exc).lower():
                raise NotFastForwardError(str(exc), status=422, body=exc.body) from exc
            raise

    def create_tag(
        self, repo: str, *, name: str, message: str, commit: str, tagger: Identity,
        date: str,
    ) -> str:
        """Create an annotated tag object for ``commit`` and return its SHA."""
        body = {
            "tag": name,
            "message": message,
            "object": commit,
            "type": "commit",
            "tagger": tagger.as_json(date),
        }
        data = self._request(repo, "POST", "/git/tags", body)
        return str(data["sha"])

    def create_ref(self, repo: str, ref: str, sha: str) -> None:
        """Create ``ref`` (a full name such as ``refs/tags/x``) pointing at ``sha``.

        Raises:
            ReferenceExistsError: a ref of that name already exists.
        """
        try:
            self._request(repo, "POST", "/git/refs", {"ref": ref, "sha": sha})
        except GitHubResponseError as exc:
            if exc.status == 422 and "already exists" in str(exc).lower():
                raise ReferenceExistsError(str(exc), status=422, body=exc.body) from exc
            raise

    def peel_tag(self, repo: str, tag: str) -> str | None:
        """Return the commit SHA that tag ``tag`` points at, or None if it is absent.

        Annotated tags are followed through their tag objects; lightweight tags point
        at the commit directly.
        """
        found = self.get_ref(repo, f"tags/{tag}")
        if found is None:
            return None

        object_type, sha = found
        # Tags of tags are legal in git; a short bound guards against cycles.
        for _ in range(5):
            if object_type != "tag":
                break
            data = self._request(repo, "GET", f"/git/tags/{sha}")
            object_type, sha = data["object"]["type"], data["object"]["sha"]

        if object_type != "commit":
            raise GitHubResponseError(
                f"Tag {tag!r} in {repo} points at a {object_type}, not a commit.",
                status=422,
            )

        return sha

    def find_commit(
        self,
        repo: str,
        branch: str,
        *,
        line: str,
        tree: str,
        committer: Identity,
        max_pages: int = 10,
    ) -> CreatedCommit | None:
        """Return the newest branch commit with message line ``line``, tree ``tree``
        and committer ``committer``, or None.

        Only the newest ``max_pages`` pages of 100 commits are searched.
        https://docs.github.com/en/rest/commits/commits#list-commits
        """
        for page in range(1, max_pages + 1):
            data = self._request(
                repo, "GET", f"/commits?sha={branch}&per_page=100&page={page}"
            )
            for item in data:
                commit = item["commit"]
                if (
                    line in commit["message"].splitlines()
                    and commit["tree"]["sha"] == tree
                    and commit["committer"]["email"] == committer.email
                ):
                    html_url = item.get("html_url", "")
                    return CreatedCommit(sha=item["sha"], html_url=html_url)
            if len(data) < 100:
                break

        return None

    def is_on_branch(self, repo: str, sha: str, branch: str) -> bool:
        """Return whether commit ``sha`` is reachable from the branch head.

        The comparison is ``branch...sha`` (base ``branch``, head ``sha``), so
        ``identical`` and ``behind`` (``sha`` is an ancestor of the head) mean
        reachable. ``ahead`` and ``diverged`` mean ``sha`` has commits the branch
        lacks, and a 404 means the two share no history: neither is reachable.
        https://docs.github.com/en/rest/commits/commits#compare-two-commits
        """
        try:
            data = self._request(repo, "GET", f"/compare/{branch}...{sha}")
        except GitHubResponseError as exc:
            if exc.status == 404:
                return False
            raise

        return data.get("status") in ("identical", "behind")
