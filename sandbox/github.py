"""A local stand-in for GitHub's REST API and App webhooks.

``GitHubSandbox`` serves the endpoints that a GitHub App uses to commit and tag
through the Git Data API, backed by real bare repositories. It checks App JWTs
and installation tokens, sends signed ``push`` and ``create`` webhooks after
every ref change, and keeps the App's delivery log. Tests steer it through
Python methods: added latency, injected error responses, hooks that run
between API calls, and a record of every call.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from sandbox import apps, git_database, git_refs
from sandbox.api import ApiError, ApiRequest, Reply, Route
from sandbox.credentials import CredentialsError, TokenStore, verify_app_jwt
from sandbox.events import bot_account, ref_change_events
from sandbox.faults import Fault, Faults, Hook
from sandbox.git import ZERO_SHA, BareRepository, Signature, TreeEntry
from sandbox.payloads import HostedRepository, Links, account
from sandbox.webhooks import Delivery, WebhookSender

__all__ = ["ApiCall", "Delivery", "ForcedUpdate", "GitHubSandbox"]

logger = logging.getLogger(__name__)

_FULL_NAME = re.compile(r"(?P<owner>[A-Za-z0-9-]+)/(?P<name>[A-Za-z0-9._-]+)")
#: Path parameters that may contain slashes, such as ``heads/main``.
_PATH_PARAMETERS = {"ref", "basehead"}
_BOT_ID = 1_000_001
_SANDBOX_IDENTITY = ("GitHub Sandbox", "sandbox@example.com")


@dataclasses.dataclass(frozen=True)
class ApiCall:
    """One API request: its method, OpenAPI route, actual path and status.

    ``route`` is empty for a path that matches no endpoint.
    """

    method: str
    route: str
    path: str
    status: int

    @property
    def endpoint(self) -> str:
        """Return ``METHOD /route/{template}``, the key used for faults and counts."""
        return f"{self.method} {self.route}"


@dataclasses.dataclass(frozen=True)
class ForcedUpdate:
    """A rejected ``PATCH .../git/refs/{ref}`` request that asked for ``force``."""

    repository: str
    ref: str
    sha: str


class GitHubSandbox:
    """GitHub's REST API and App webhooks for a few local repositories."""

    def __init__(
        self,
        *,
        root: str | os.PathLike[str],
        app_id: str,
        public_key_pem: bytes,
        repositories: Iterable[str],
        webhook_url: str | None = None,
        webhook_secret: str,
        installation_id: int = 1,
        token_lifetime: float = 3600,
        branch: str = "main",
        app_slug: str = "sandbox-app",
        base_url: str | None = None,
    ) -> None:
        self.root = Path(root)
        self.app_id = app_id
        self.public_key_pem = public_key_pem
        self.installation_id = installation_id
        #: Lifetime in seconds of installation tokens issued from now on.
        self.token_lifetime = token_lifetime
        self.branch = branch
        self.app_slug = app_slug
        #: URL that links in responses and payloads start with. When None, the
        #: first API request sets it from the URL the client used.
        self.base_url = base_url
        self.calls: list[ApiCall] = []
        self.forced_updates: list[ForcedUpdate] = []
        self.tokens = TokenStore()
        self.webhooks = WebhookSender(
            url=webhook_url, secret=webhook_secret, hook_id=1, target_id=app_id
        )
        self._lock = threading.Lock()
        self._repos: dict[str, HostedRepository] = {}
        self._git: dict[str, BareRepository] = {}
        for index, full_name in enumerate(repositories):
            self._add_repository(full_name, 1001 + index)

        self._routes = [*apps.ROUTES, *git_database.ROUTES, *git_refs.ROUTES]
        self.faults = Faults(route.endpoint for route in self._routes)
        self._map = Map(
            [
                Rule(_werkzeug_path(route.template), endpoint=i, methods=[route.method])
                for i, route in enumerate(self._routes)
            ],
            strict_slashes=False,
            merge_slashes=False,
        )

    # -- configuration ------------------------------------------------------

    @property
    def webhook_url(self) -> str | None:
        """URL that webhooks are sent to; None sends nothing."""
        return self.webhooks.url

    @webhook_url.setter
    def webhook_url(self, value: str | None) -> None:
        self.webhooks.url = value

    @property
    def webhook_secret(self) -> str:
        """Secret that signs webhook deliveries."""
        return self.webhooks.secret

    @webhook_secret.setter
    def webhook_secret(self, value: str) -> None:
        self.webhooks.secret = value

    @property
    def repositories(self) -> list[HostedRepository]:
        """Return the hosted repositories in the order they were configured."""
        return list(self._repos.values())

    def repository(self, full_name: str) -> BareRepository:
        """Return the bare repository behind ``owner/name``.

        Raises:
            KeyError: the sandbox does not host that repository.
        """
        return self._git[self._hosted(full_name).full_name.lower()]

    def find_repository(self, full_name: str) -> HostedRepository | None:
        """Return the hosted repository ``owner/name`` (case-insensitive), or None."""
        return self._repos.get(full_name.lower())

    def _hosted(self, full_name: str) -> HostedRepository:
        repo = self.find_repository(full_name)
        if repo is None:
            raise KeyError(f"The sandbox does not host repository {full_name!r}.")

        return repo

    def _add_repository(self, full_name: str, repo_id: int) -> None:
        match = _FULL_NAME.fullmatch(full_name)
        if match is None:
            raise ValueError(
                f"Repository name {full_name!r} is invalid: expected 'owner/name'."
            )

        hosted = HostedRepository(
            id=repo_id,
            owner=match["owner"],
            name=match["name"],
            default_branch=self.branch,
            created_at=datetime.datetime.now(datetime.UTC),
        )
        git = BareRepository(self.root / hosted.owner / f"{hosted.name}.git")
        if not git.exists():
            git.init(self.branch)

        if git.read_ref(f"refs/heads/{self.branch}") is None:
            readme = git.write_blob(f"# {hosted.name}\n".encode())
            tree = git.write_tree([TreeEntry("README.md", readme)])
            identity = Signature(*_SANDBOX_IDENTITY, hosted.created_at)
            commit = git.commit_tree(tree, [], "Initial commit", identity, identity)
            git.update_ref(f"refs/heads/{self.branch}", commit, ZERO_SHA)

        self._repos[full_name.lower()] = hosted
        self._git[full_name.lower()] = git

    # -- fault injection and hooks ----------------------------------------------

    @property
    def latency(self) -> float:
        """Seconds added to every API call."""
        return self.faults.latency_for(None)

    @latency.setter
    def latency(self, seconds: float) -> None:
        self.set_latency(seconds)

    def set_latency(self, seconds: float, *, endpoint: str | None = None) -> None:
        """Add ``seconds`` to every call, or only to ``endpoint`` calls.

        ``endpoint`` is written as in ``ApiCall.endpoint``, for example
        ``"PATCH /repos/{owner}/{repo}/git/refs/{ref}"``.
        """
        self.faults.set_latency(seconds, endpoint)

    def fail_call(
        self,
        endpoint: str,
        status: int,
        *,
        nth: int = 1,
        count: int = 1,
        headers: dict[str, str] | None = None,
        body: Any = None,
        after_handling: bool = False,
    ) -> None:
        """Fail ``count`` calls of ``endpoint`` with ``status``, from the ``nth`` on.

        Calls are counted from now. ``body`` defaults to GitHub's
        ``{"message": <reason phrase>}``. With ``after_handling`` the call
        takes effect first and only its response is replaced, like a response
        lost on the way back to the client.
        """
        self.faults.add_fault(
            Fault(
                endpoint=endpoint,
                status=status,
                skip=nth - 1,
                remaining=count,
                headers=dict(headers or {}),
                body=body,
                after_handling=after_handling,
            )
        )

    def add_hook(
        self,
        callback: Hook,
        *,
        endpoint: str | None = None,
        after: bool = False,
        once: bool = False,
    ) -> None:
        """Call ``callback(endpoint, path_params)`` around API calls.

        The hook runs before each call is handled, or after it with ``after``.
        It runs for every endpoint unless ``endpoint`` names one, and ``once``
        removes it after its first run. A hook lets a test change the
        repository between two calls, for example to race a commit against a
        ref update.
        """
        self.faults.add_hook(callback, endpoint, after=after, once=once)

    def clear_faults(self) -> None:
        """Remove every latency, injected failure and hook."""
        self.faults.clear()

    def expire_tokens(self) -> None:
        """Make every installation token issued so far expire now."""
        self.tokens.expire_all()

    def record_forced_update(self, repository: str, ref: str, sha: str) -> None:
        """Note a rejected request to force-update ``ref`` to ``sha``."""
        with self._lock:
            self.forced_updates.append(ForcedUpdate(repository, ref, sha))

    def call_counts(self) -> collections.Counter[str]:
        """Count the API calls made so far by endpoint."""
        with self._lock:
            return collections.Counter(call.endpoint for call in self.calls)

    # -- webhooks ------------------------------------------------------------

    @property
    def deliveries(self) -> list[Delivery]:
        """Return the finished webhook deliveries, oldest first."""
        return self.webhooks.deliveries

    def wait_for_deliveries(self, timeout: float = 15.0) -> None:
        """Block until no webhook delivery is in flight.

        Raises:
            TimeoutError: deliveries were still in flight after ``timeout`` seconds.
        """
        self.webhooks.wait_idle(timeout)

    def delay_deliveries(self, seconds: float, *, event: str | None = None) -> None:
        """Wait ``seconds`` before sending each delivery, or each ``event`` one."""
        self.webhooks.delays[event or ""] = seconds

    def send_delivery(
        self,
        event: str,
        payload: dict[str, Any],
        *,
        secret: str | None = None,
        body: bytes | None = None,
    ) -> Delivery:
        """Send a custom delivery now and return it once the receiver responded.

        ``secret`` signs it with another secret, to test signature checks.
        ``body`` sends those exact bytes in place of ``payload`` as JSON.

        Raises:
            RuntimeError: ``webhook_url`` is not set.
        """
        delivery = self.webhooks.send(
            event, payload, wait=True, secret=secret, body=body
        )
        if delivery is None:
            raise RuntimeError("Set webhook_url before sending a delivery.")

        return delivery

    def redeliver(self, delivery_id: int) -> None:
        """Send delivery ``delivery_id`` again with its GUID, in the background.

        Raises:
            KeyError: there is no finished delivery with that id.
        """
        if not self.webhooks.redeliver(delivery_id):
            raise KeyError(f"There is no delivery with id {delivery_id}.")

    # -- test helpers that change repositories ----------------------------------

    def create_installation_token(self) -> str:
        """Issue an installation token for every repository, without a JWT."""
        token = self.tokens.issue(
            self.installation_id,
            lifetime=self.token_lifetime,
            repositories=frozenset(self._repos),
            permissions=dict(apps.PERMISSIONS),
        )
        return token.token

    def push_commit(
        self,
        full_name: str,
        files: dict[str, bytes],
        message: str,
        *,
        author: Signature | None = None,
    ) -> str:
        """Commit ``files`` as the whole tree on top of the branch, as a user push.

        The branch is fast-forwarded and a ``push`` webhook is sent from a
        user account, as if someone pushed with git. Returns the commit id.
        """
        repo = self._hosted(full_name)
        git = self.repository(full_name)
        ref = f"refs/heads/{repo.default_branch}"
        entries = [
            TreeEntry(path, git.write_blob(data)) for path, data in files.items()
        ]
        if author is None:
            now = datetime.datetime.now(datetime.UTC)
            author = Signature("Sandbox User", "user@example.com", now)

        while True:
            head = git.read_ref(ref) or ZERO_SHA
            parents = [] if head == ZERO_SHA else [head]
            tree = git.write_tree(entries)
            commit = git.commit_tree(tree, parents, message, author, author)
            if git.update_ref(ref, commit, head):
                break

        sender = account(self._links(), "sandbox-user", 2_000_001, "User")
        self.announce_ref_change(repo, ref, head, commit, sender=sender)
        return commit

    def push_ref(self, full_name: str, ref: str, sha: str) -> str:
        """Set ``ref`` to ``sha`` as ``git push --force`` by a user would.

        ``sha`` may be any object id (a commit, or a tag object for an
        annotated tag), or ``ZERO_SHA`` to delete the ref. Unlike the REST
        API, this rewrites history when asked to. The ``push`` webhook, and a
        ``create`` for a new ref, are sent as for any ref change. Returns the
        ref's old value (``ZERO_SHA`` if it did not exist).
        """
        repo = self._hosted(full_name)
        git = self.repository(full_name)
        while True:
            before = git.read_ref(ref) or ZERO_SHA
            if git.update_ref(ref, sha, before):
                break

        sender = account(self._links(), "sandbox-user", 2_000_001, "User")
        self.announce_ref_change(repo, ref, before, sha, sender=sender)
        return before

    def announce_ref_change(
        self,
        repo: HostedRepository,
        ref: str,
        before: str,
        after: str,
        *,
        sender: dict[str, Any] | None = None,
    ) -> None:
        """Send the webhooks for a ref that moved from ``before`` to ``after``.

        Every ref change sends a ``push``, and a new ref also sends a
        ``create``. Each delivery runs on its own thread, so the two may
        arrive in either order.
        """
        links = self._links()
        events = ref_change_events(
            links,
            repo,
            self.repository(repo.full_name),
            ref=ref,
            before=before,
            after=after,
            sender=sender or bot_account(links, self.app_slug, _BOT_ID),
            installation_id=self.installation_id,
        )
        for event, payload in events:
            self.webhooks.send(event, payload)

    def _links(self) -> Links:
        return Links(self.base_url or "http://127.0.0.1")

    # -- WSGI ----------------------------------------------------------------

    def wsgi_app(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        """Serve the REST API as a WSGI application."""
        request = Request(environ)
        response = self._handle(request)
        return response(environ, start_response)

    def _handle(self, request: Request) -> Response:
        if self.base_url is None:
            self.base_url = request.root_url.rstrip("/")

        adapter = self._map.bind_to_environ(request.environ)
        try:
            rule, params = adapter.match(return_rule=True)
        except HTTPException:
            reply = Reply(404, ApiError(404, "Not Found").body())
            self._record(ApiCall(request.method, "", request.path, 404))
            return _to_response(reply)

        route = self._routes[rule.endpoint]
        time.sleep(self.faults.latency_for(route.endpoint))
        self.faults.run_hooks(route.endpoint, params, after=False)
        fault = self.faults.take_fault(route.endpoint)
        if fault is not None and not fault.after_handling:
            reply = fault.reply()
        else:
            reply = self._call_handler(route, request, params)
            if fault is not None:
                reply = fault.reply()

        self.faults.run_hooks(route.endpoint, params, after=True)
        self._record(ApiCall(route.method, route.template, request.path, reply.status))
        return _to_response(reply)

    def _call_handler(
        self, route: Route, request: Request, params: dict[str, str]
    ) -> Reply:
        try:
            api_request = self._authenticate(route, request, params)
            return route.handler(self, api_request)
        except ApiError as exc:
            return Reply(exc.status, exc.body(), exc.headers)
        except Exception:
            # A bug or a git failure still gets GitHub's JSON error shape, so
            # the client under test sees a 500 it can handle.
            logger.exception("GitHub sandbox failed to handle %s", route.endpoint)
            return Reply(500, ApiError(500, "Server Error").body())

    def _authenticate(
        self, route: Route, request: Request, params: dict[str, str]
    ) -> ApiRequest:
        scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
        scheme = scheme.lower()
        links = self._links()
        repo = None
        if "owner" in params:
            repo = self.find_repository(f"{params['owner']}/{params['repo']}")

        if route.auth == "jwt":
            if scheme != "bearer":
                raise ApiError(401, "A JSON web token could not be decoded")

            try:
                verify_app_jwt(
                    credential, public_key=self.public_key_pem, app_id=self.app_id
                )
            except CredentialsError as exc:
                raise ApiError(401, str(exc)) from None

            if "owner" in params and repo is None:
                raise ApiError(404, "Not Found")

            return ApiRequest(request, params, links, repo)

        token = self.tokens.find(credential) if scheme in {"token", "bearer"} else None
        if token is None:
            raise ApiError(401, "Bad credentials")

        if repo is None or repo.full_name.lower() not in token.repositories:
            raise ApiError(404, "Not Found")

        return ApiRequest(request, params, links, repo, token)

    def _record(self, call: ApiCall) -> None:
        with self._lock:
            self.calls.append(call)


def _werkzeug_path(template: str) -> str:
    def convert(match: re.Match[str]) -> str:
        name = match[1]
        return f"<path:{name}>" if name in _PATH_PARAMETERS else f"<{name}>"

    return re.sub(r"\{(\w+)\}", convert, template)


def _to_response(reply: Reply) -> Response:
    if isinstance(reply.body, bytes | str):
        return Response(reply.body, reply.status, reply.headers)

    return Response(
        json.dumps(reply.body),
        reply.status,
        reply.headers,
        content_type="application/json; charset=utf-8",
    )
