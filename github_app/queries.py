"""The query flow: validate a request, commit and tag its code, request its job.

``QueryService`` is called by the query API and by the webhook handlers. Each step
is recorded in the store as it completes (``received``, ``committed``, ``tagged``,
``job_requested``, or ``failed`` with a reason), and every step checks what is
already recorded first, so repeating a request resumes it instead of committing
twice. The branch is only ever fast-forwarded.
"""

import hashlib
import json
import random
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from jsonschema import Draft202012Validator

from github_app import templates
from github_app.codelists import (
    CodelistNotDownloadableError,
    CodelistNotFoundError,
    OpenCodelistsClient,
    OpenCodelistsResponseError,
    OpenCodelistsUnavailableError,
)
from github_app.config import Settings
from github_app.github import (
    CreatedCommit,
    GitHubClient,
    GitHubResponseError,
    GitHubUnavailableError,
    Identity,
    NotFastForwardError,
    ReferenceExistsError,
)
from github_app.jobs import (
    JobRequestSpec,
    JobServerClient,
    JobServerResponseError,
    JobServerUnavailableError,
)
from github_app.metrics import JOB_REQUESTS_CREATED
from github_app.store import FAILED, JobRequest, Query, QueryExistsError, Store

logger = structlog.get_logger(__name__)

QUERY_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
#: Attempts at moving the branch when other commits keep winning the race.
MAX_FAST_FORWARD_ATTEMPTS = 20
#: A pending job request older than this was abandoned by a stopped worker.
JOB_REQUEST_CLAIM_TIMEOUT = timedelta(seconds=30)

_NAME = {"type": "string", "minLength": 1, "maxLength": 100}
REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["id", "workspace", "backend", "requested_by", "analysis"],
    "properties": {
        "id": {"type": "string", "pattern": QUERY_ID_PATTERN.pattern},
        "repo": {"type": "string", "maxLength": 200},
        "workspace": {**_NAME, "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]*$"},
        "backend": {**_NAME, "pattern": "^[a-z0-9][a-z0-9_-]*$"},
        "requested_by": {
            "type": "object",
            "additionalProperties": False,
            "required": ["username", "name", "email"],
            "properties": {
                "username": {**_NAME, "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*$"},
                # Name and email go into git headers: no control characters or <>.
                "name": {**_NAME, "pattern": "^[^\\x00-\\x1f\\x7f<>]+$"},
                "email": {
                    "type": "string",
                    "maxLength": 254,
                    "pattern": "^[^\\s<>@]+@[^\\s<>@]+\\.[^\\s<>@]+$",
                },
            },
        },
        "analysis": {
            "type": "object",
            "additionalProperties": False,
            "required": ["template", "inputs"],
            "properties": {
                "template": {"type": "string", "maxLength": 100},
                "inputs": {"type": "object"},
            },
        },
    },
}


class QueryError(Exception):
    """Base class of the errors the query API turns into responses."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class QueryValidationError(QueryError):
    status, code = 400, "invalid_request"


class QueryNotFoundError(QueryError):
    status, code = 404, "not_found"


class QueryConflictError(QueryError):
    status, code = 409, "conflict"


class QueryNotReadyError(QueryError):
    status, code = 409, "not_ready"


class TagRefusedError(QueryError):
    """The tag's commit is not the recorded one, or is not on the branch."""

    status, code = 422, "tag_refused"


class UpstreamRejectedError(QueryError):
    status, code = 502, "upstream_rejected"


class ServiceUnavailableError(QueryError):
    status, code = 503, "unavailable"


@dataclass
class JobRequestResult:
    row: JobRequest
    created: bool


@dataclass
class _RepositoryState:
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: The branch head this process last saw, and when it saw it.
    head: str | None = None
    head_seen_at: datetime | None = None


def _control_characters(
    value: Any, *, path: str = "", exclude: tuple[str, ...] = ()
) -> list[dict[str, str]]:
    """Name every string field holding a control character such as a newline.

    JSON Schema patterns end in ``$``, which Python's ``re`` also matches before a
    final newline, so ``"abc\n"`` would pass a pattern meant to allow only ``abc``.
    """
    if isinstance(value, str):
        if any(ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F for char in value):
            return [{"field": path, "message": "must not contain control characters"}]
        return []

    if isinstance(value, dict):
        found = []
        for key, item in value.items():
            if key not in exclude:
                found += _control_characters(item, path=f"{path}.{key}".lstrip("."))
        return found

    return []


def fingerprint(body: dict[str, Any]) -> str:
    """Hash the canonical form of a request body, to tell replays from conflicts."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class QueryService:
    """Carry queries from request to job request."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        github: GitHubClient,
        job_server: JobServerClient,
        codelists: OpenCodelistsClient | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.github = github
        self.job_server = job_server
        self.codelists = codelists or OpenCodelistsClient(
            base_url=settings.opencodelists_url, timeout=settings.http_timeout
        )
        self.bot = Identity(settings.committer_name, settings.committer_email)
        self._repositories: dict[str, _RepositoryState] = {}
        self._lock = threading.Lock()
        #: Commits rebuilt because the branch moved, for logs and benchmarks.
        self.retries = 0

    # -- validation -----------------------------------------------------------

    def validate(self, body: Any) -> dict[str, Any]:
        """Check a request body and return it with ``repo`` filled in.

        Raises:
            QueryValidationError: with one entry per problem in ``details``.
        """
        problems = [
            {"field": ".".join(str(p) for p in error.path) or "(body)",
             "message": error.message}
            for error in Draft202012Validator(REQUEST_SCHEMA).iter_errors(body)
        ]
        if not problems:
            problems = _control_characters(body, exclude=("analysis",))
        if problems:
            raise QueryValidationError("The query request is invalid.", problems)

        query_id = body["id"]
        reason = self._unusable_tag_reason(query_id)
        if reason is not None:
            raise QueryValidationError(
                "The query request is invalid.", [{"field": "id", "message": reason}]
            )

        body = {**body, "repo": self._choose_repository(body.get("repo"))}
        template = body["analysis"]["template"]
        try:
            errors = templates.validate_inputs(
                template,
                body["analysis"]["inputs"],
                templates_dir=self.settings.templates_dir,
            )
        except templates.TemplateNotFoundError as exc:
            raise QueryValidationError(
                "The query request is invalid.",
                [{"field": "analysis.template", "message": str(exc)}],
            ) from None
        if errors:
            raise QueryValidationError(
                "The query request is invalid.",
                [{"field": e.field, "message": e.message} for e in errors],
            )

        return body

    def _render_files(self, request: dict[str, Any]) -> dict[str, str]:
        """Download the codelists a valid request names and render its files.

        Raises:
            QueryValidationError: a codelist is unknown, cannot be downloaded, or
                does not suit the template.
            ServiceUnavailableError: OpenCodelists failed; nothing was stored.
            UpstreamRejectedError: OpenCodelists sent something unexpected.
        """
        template = templates.find_template(
            request["analysis"]["template"], self.settings.templates_dir
        )
        inputs = request["analysis"]["inputs"]
        named = {inputs[key]: key for key in template.codelist_inputs if key in inputs}
        try:
            codelists = self.codelists.download_all(list(named))
            return templates.render(
                template.name,
                query_id=request["id"],
                inputs=inputs,
                codelists=codelists,
                templates_dir=self.settings.templates_dir,
            )
        except (CodelistNotFoundError, CodelistNotDownloadableError) as exc:
            field = f"analysis.inputs.{named[exc.codelist_id]}"
            raise QueryValidationError(
                "The query request is invalid.", [{"field": field, "message": str(exc)}]
            ) from None
        except templates.InvalidInputsError as exc:
            raise QueryValidationError(
                "The query request is invalid.",
                [{"field": e.field, "message": e.message} for e in exc.errors],
            ) from None
        except OpenCodelistsUnavailableError as exc:
            raise ServiceUnavailableError(
                f"OpenCodelists is unavailable: {exc} Nothing was stored; send the "
                "same request again later.",
                {"codelist": exc.codelist_id},
            ) from exc
        except OpenCodelistsResponseError as exc:
            raise UpstreamRejectedError(
                f"OpenCodelists sent an unexpected response: {exc}",
                {"codelist": exc.codelist_id},
            ) from exc

    def _unusable_tag_reason(self, query_id: str) -> str | None:
        """Say why ``query_id`` cannot be a tag name, or return None if it can.

        https://git-scm.com/docs/git-check-ref-format
        """
        if query_id.endswith((".lock", ".")) or ".." in query_id:
            return "must not end in '.' or '.lock', or contain '..'"

        # Names that git would read as the branch, HEAD or a commit id.
        if query_id in ("HEAD", self.settings.query_branch) or re.fullmatch(
            r"[0-9a-fA-F]{7,40}", query_id
        ):
            return f"{query_id!r} would be ambiguous with a branch, HEAD or commit id"

        return None

    def _choose_repository(self, repo: str | None) -> str:
        configured = self.settings.query_repositories
        if repo is None:
            if len(configured) == 1:
                return configured[0]
            raise QueryValidationError(
                "The query request is invalid.",
                [{"field": "repo", "message": "is required when several repositories "
                  f"are configured: one of {', '.join(configured)}"}],
            )

        if repo not in configured:
            raise QueryValidationError(
                "The query request is invalid.",
                [{"field": "repo", "message": f"{repo!r} is not a query repository: "
                  f"use one of {', '.join(configured)}"}],
            )

        return repo

    # -- submitting -----------------------------------------------------------

    def submit(self, body: Any) -> tuple[Query, bool]:
        """Accept a query request and carry it as far as the tag.

        Returns the query and whether it was new. A replay of the same body resumes
        an unfinished query and returns it.

        Raises:
            QueryValidationError, QueryConflictError, ServiceUnavailableError,
            UpstreamRejectedError, TagRefusedError.
        """
        request = self.validate(body)
        digest = fingerprint(request)
        query = self.store.get_query(request["id"])
        created = False
        if query is None:
            files = self._render_files(request)
            try:
                query = self.store.create_query(
                    id=request["id"],
                    repo=request["repo"],
                    branch=self.settings.query_branch,
                    workspace=request["workspace"],
                    backend=request["backend"],
                    created_by=request["requested_by"]["username"],
                    fingerprint=digest,
                    request=request,
                    files=files,
                )
                created = True
                logger.info("Received query", query_id=query.id, repo=query.repo)
            except QueryExistsError:
                query = self.store.get_query(request["id"])
                assert query is not None  # noqa: S101 - it was just found to exist

        if query.fingerprint != digest:
            raise QueryConflictError(
                f"A different query with id {query.id!r} was already received: "
                "use a new id for a new query.",
                {"id": query.id},
            )

        return self.advance(query, resuming=not created), created

    def advance(self, query: Query, *, resuming: bool = True) -> Query:
        """Run whichever steps of committing and tagging are not yet recorded.

        Only the holder of the query's lease works on it, so a replay that arrives
        while the first request is still committing waits for it instead of
        committing again. ``resuming`` means an earlier attempt may have stopped
        between a GitHub call and recording it, so GitHub is checked first.
        """
        if query.state not in ("received", "committed"):
            return query

        owner = uuid.uuid4().hex
        lease = timedelta(seconds=self.settings.query_lease_seconds)
        if not self.store.acquire_lease(query.id, owner, lease):
            return self._wait_for_other_worker(query.id)

        # A BaseException such as a worker being killed skips the release, as a
        # crash would; the lease then expires and another worker resumes.
        try:
            query = self.store.get_query(query.id) or query
            if query.state == "received":
                query = self._guard(query, self._commit, resuming)
            if query.state == "committed":
                query = self._guard(query, self._tag, resuming)
        except Exception:
            self.store.release_lease(query.id, owner)
            raise

        self.store.release_lease(query.id, owner)
        return query

    def _wait_for_other_worker(self, query_id: str) -> Query:
        deadline = time.monotonic() + min(self.settings.query_lease_seconds, 15.0)
        while True:
            query = self.store.get_query(query_id)
            assert query is not None  # noqa: S101 - queries are never deleted
            if query.state not in ("received", "committed"):
                return query
            if time.monotonic() >= deadline:
                raise ServiceUnavailableError(
                    f"Query {query_id} is being committed by another request; "
                    "send the same request again shortly to see the result.",
                    {"id": query_id, "state": query.state},
                )
            time.sleep(0.1)

    def _guard(self, query: Query, step: Any, resuming: bool) -> Query:
        try:
            result: Query = step(query, resuming=resuming)
            return result
        except GitHubUnavailableError as exc:
            logger.warning("GitHub unavailable", query_id=query.id, error=str(exc))
            raise ServiceUnavailableError(
                f"GitHub is unavailable: {exc} The query was kept; send the same "
                "request again to resume it.",
                {"id": query.id, "state": query.state},
            ) from exc
        except GitHubResponseError as exc:
            failed = self.store.fail_query(query.id, str(exc))
            logger.error("Query failed", query_id=query.id, error=str(exc))
            raise UpstreamRejectedError(
                f"GitHub rejected the query: {exc}", {"id": failed.id}
            ) from exc

    def _repository(self, repo: str) -> _RepositoryState:
        with self._lock:
            return self._repositories.setdefault(repo, _RepositoryState())

    def _commit_message(self, query: Query) -> str:
        person = query.request["requested_by"]
        template = query.request["analysis"]["template"]
        config = json.loads(query.files.get(templates.CONFIG_FILE, "{}"))
        version = config.get("template_version", "unknown")
        return (
            f"Add interactive query {query.id}\n\n"
            f"Analysis code rendered from the {template} template.\n\n"
            f"Query-Id: {query.id}\n"
            f"Requested-By: {person['name']} <{person['email']}>\n"
            f"Template: {template}@{version}\n"
        )

    def _commit(self, query: Query, *, resuming: bool) -> Query:
        # The tree does not depend on the parent, so it is built outside the lock.
        tree = self.github.create_tree(query.repo, query.files)
        if resuming:
            # An earlier attempt may have moved the branch and stopped before
            # recording it: adopt that commit rather than commit again. Only the
            # app's own commit of exactly this tree qualifies, never a look-alike.
            landed = self.github.find_commit(
                query.repo,
                query.branch,
                line=f"Query-Id: {query.id}",
                tree=tree,
                committer=self.bot,
            )
            if landed is not None:
                logger.warning(
                    "Adopted unrecorded commit", query_id=query.id, sha=landed.sha
                )
                return self._record_commit(query, landed)

        repository = self._repository(query.repo)
        # One commit at a time per repository in this process, so workers don't
        # spend their fast-forward attempts racing each other.
        with repository.lock:
            commit = self._commit_on_branch(query, repository, tree)
            repository.head = commit.sha
            repository.head_seen_at = datetime.now(UTC)

        return self._record_commit(query, commit)

    def _cached_head(self, repo: str, repository: _RepositoryState) -> str | None:
        """Return the cached branch head unless the branch was force-pushed since.

        A force-push can rewind the branch to an ancestor of the cached head. A
        commit built on that head would still be a fast-forward, so it would put
        the removed commits back.
        """
        if repository.head is None or repository.head_seen_at is None:
            return None

        # NOTE: a forced push whose webhook has not arrived yet is not seen here.
        forced_at = self.store.last_forced_push(repo)
        if forced_at is not None and forced_at >= repository.head_seen_at:
            logger.warning("Dropped cached head after a forced push", repo=repo)
            repository.head = None
            return None

        return repository.head

    def _record_commit(self, query: Query, commit: CreatedCommit) -> Query:
        logger.info(
            "Committed query", query_id=query.id, sha=commit.sha, repo=query.repo
        )
        return self.store.advance_query(
            query.id, "committed", commit_sha=commit.sha, commit_url=commit.html_url
        )

    def _commit_on_branch(
        self, query: Query, repository: _RepositoryState, tree: str
    ) -> CreatedCommit:
        person = query.request["requested_by"]
        author = Identity(person["name"], person["email"])
        parent = self._cached_head(query.repo, repository)
        if parent is None:
            parent = self.github.get_branch_head(query.repo, query.branch)
        for attempt in range(1, MAX_FAST_FORWARD_ATTEMPTS + 1):
            commit = self.github.create_commit(
                query.repo,
                message=self._commit_message(query),
                tree=tree,
                parent=parent,
                author=author,
                committer=self.bot,
                date=_now_iso(),
            )
            try:
                self.github.fast_forward(query.repo, query.branch, commit.sha)
                return commit
            except NotFastForwardError:
                repository.head = None
                head = self.github.get_branch_head(query.repo, query.branch)
                # A retried update may have landed before another commit went on
                # top of it; committing again would add a duplicate.
                if head == commit.sha or self.github.is_on_branch(
                    query.repo, commit.sha, query.branch
                ):
                    return commit
                self.retries += 1
                logger.info(
                    "Branch moved, rebuilding commit", query_id=query.id, attempt=attempt
                )
                time.sleep(random.uniform(0, min(0.5, 0.01 * 2**attempt)))
                parent = head

        raise GitHubUnavailableError(
            f"The branch {query.branch} kept moving: {MAX_FAST_FORWARD_ATTEMPTS} "
            "attempts to fast-forward it failed."
        )

    def _tag(self, query: Query, *, resuming: bool) -> Query:
        assert query.commit_sha is not None  # noqa: S101 - set by the commit step
        if resuming:
            existing = self.github.get_ref(query.repo, f"tags/{query.id}")
            if existing is not None:
                return self._adopt_tag(query, existing[1])

        person = query.request["requested_by"]
        tag_sha = self.github.create_tag(
            query.repo,
            name=query.id,
            message=f"Interactive query {query.id}\n\nRequested-By: "
            f"{person['name']} <{person['email']}>\n",
            commit=query.commit_sha,
            tagger=self.bot,
            date=_now_iso(),
        )
        try:
            self.github.create_ref(query.repo, f"refs/tags/{query.id}", tag_sha)
        except ReferenceExistsError:
            existing = self.github.get_ref(query.repo, f"tags/{query.id}")
            if existing is None:
                raise GitHubUnavailableError(
                    f"Tag {query.id} was reported to exist but could not be read."
                ) from None
            return self._adopt_tag(query, existing[1])

        logger.info("Tagged query", query_id=query.id, tag=query.id, repo=query.repo)
        return self.store.advance_query(query.id, "tagged", tag_sha=tag_sha)

    def _adopt_tag(self, query: Query, ref_sha: str) -> Query:
        """Accept an existing tag if it points at the query's commit, else fail."""
        peeled = self.github.peel_tag(query.repo, query.id)
        if peeled != query.commit_sha:
            reason = (
                f"Tag {query.id} already exists in {query.repo} and points at "
                f"{peeled}, not at the query's commit {query.commit_sha}."
            )
            logger.warning(
                "Security: tag points elsewhere",
                query_id=query.id,
                tag=query.id,
                sha=peeled,
                repo=query.repo,
            )
            self.store.fail_query(query.id, reason)
            raise TagRefusedError(reason, {"id": query.id})

        logger.info("Adopted existing tag", query_id=query.id, tag=query.id)
        return self.store.advance_query(query.id, "tagged", tag_sha=ref_sha)

    # -- job requests ---------------------------------------------------------

    def confirm_tag(self, query: Query) -> str:
        """Peel the query's tag and check its commit is the recorded one, on the branch.

        Raises:
            QueryNotReadyError: the query has no commit yet, or the tag is absent.
            TagRefusedError: the tag's commit differs or is not on the branch.
            ServiceUnavailableError: GitHub could not be asked.
        """
        if query.commit_sha is None:
            raise QueryNotReadyError(
                f"Query {query.id} has no commit yet (state {query.state}).",
                {"id": query.id, "state": query.state},
            )

        try:
            sha = self.github.peel_tag(query.repo, query.id)
            if sha is None:
                raise QueryNotReadyError(
                    f"Tag {query.id} does not exist in {query.repo} yet.",
                    {"id": query.id},
                )
            on_branch = sha == query.commit_sha and self.github.is_on_branch(
                query.repo, sha, query.branch
            )
        except GitHubUnavailableError as exc:
            raise ServiceUnavailableError(f"GitHub is unavailable: {exc}") from exc
        except GitHubResponseError as exc:
            raise UpstreamRejectedError(f"GitHub rejected a call: {exc}") from exc

        if sha != query.commit_sha:
            raise TagRefusedError(
                f"Tag {query.id} points at {sha}, but the app committed "
                f"{query.commit_sha} for this query; no job request was created.",
                {"id": query.id, "sha": sha},
            )

        if not on_branch:
            raise TagRefusedError(
                f"Commit {sha} of tag {query.id} is not on {query.branch}; no job "
                "request was created.",
                {"id": query.id, "sha": sha},
            )

        if query.tag_sha is None:
            # The tagging worker stopped before recording the tag it created.
            self._record_found_tag(query)
        return sha

    def _record_found_tag(self, query: Query) -> None:
        try:
            found = self.github.get_ref(query.repo, f"tags/{query.id}")
        except (GitHubUnavailableError, GitHubResponseError) as exc:
            logger.warning("Could not read tag", query_id=query.id, error=str(exc))
            return

        if found is not None:
            self.store.advance_query(query.id, "tagged", tag_sha=found[1])

    def request_job(
        self, query: Query, *, trigger: str, delivery_id: str | None, first: bool
    ) -> JobRequestResult:
        """Create a job request in Job Server for the query's confirmed commit.

        With ``first``, this is the query's one job request from its tag events and
        is created at most once; otherwise it is an additional re-run.

        Raises:
            ServiceUnavailableError: Job Server failed transiently; nothing recorded.
            UpstreamRejectedError: Job Server rejected the job request.
        """
        assert query.commit_sha is not None  # noqa: S101 - confirmed by the caller
        row, owned = self.store.claim_job_request(
            query_id=query.id,
            seq=1 if first else None,
            trigger=trigger,
            sha=query.commit_sha,
            delivery_id=delivery_id,
            stale_after=JOB_REQUEST_CLAIM_TIMEOUT,
        )
        if not owned:
            return JobRequestResult(row=row, created=False)

        spec = JobRequestSpec(
            analysis_request=query.id,
            workspace=query.workspace,
            backend=query.backend,
            sha=query.commit_sha,
            created_by=query.created_by,
            project_definition=query.files["project.yaml"],
        )
        try:
            created = self.job_server.create_job_request(
                spec, idempotency_key=f"{query.id}/{row.seq}"
            )
        except JobServerUnavailableError as exc:
            self.store.release_job_request(row.id)
            logger.warning("Job Server unavailable", query_id=query.id, error=str(exc))
            raise ServiceUnavailableError(
                f"Job Server is unavailable: {exc}", {"id": query.id}
            ) from exc
        except JobServerResponseError as exc:
            self.store.release_job_request(row.id)
            self.store.fail_query(query.id, str(exc))
            logger.error("Job request rejected", query_id=query.id, error=str(exc))
            raise UpstreamRejectedError(str(exc), {"id": query.id}) from exc

        row = self.store.complete_job_request(
            row.id, job_server_id=str(created.id), url=created.url
        )
        self.store.advance_query(query.id, "job_requested", revive=True)
        JOB_REQUESTS_CREATED.labels(trigger=trigger).inc()
        logger.info(
            "Created job request",
            query_id=query.id,
            sha=query.commit_sha,
            job_request_id=created.id,
            trigger=trigger,
        )
        return JobRequestResult(row=row, created=True)

    def reconcile(self, *, include_failed: bool = False) -> list[Query]:
        """Resume every query whose commit or tag is not yet recorded.

        With ``include_failed``, queries that failed before being tagged (a
        branch protection rule, bad credentials) are tried again too, once an
        operator has fixed the cause.
        """
        if include_failed:
            for query_id in self.store.reopen_failed_queries():
                logger.info("Reopened failed query", query_id=query_id)

        finished = []
        for query in self.store.unfinished_queries():
            try:
                finished.append(self.advance(query, resuming=True))
            except QueryError as exc:
                logger.warning(
                    "Could not resume query", query_id=query.id, error=exc.message
                )

        return finished

    def request_missing_jobs(self) -> list[JobRequestResult]:
        """Create the job request of every tagged query that has none; return them.

        Tag events do not always arrive: GitHub sends none for tags when one push
        creates more than three, and a delivery can fail for good. Each query is
        confirmed on the branch first, and the job request is the query's first,
        so a tag event arriving later does not add a second.
        """
        results = []
        for query in self.store.queries_in_state("tagged"):
            try:
                self.confirm_tag(query)
                result = self.request_job(
                    query, trigger="reconcile", delivery_id=None, first=True
                )
            except QueryError as exc:
                logger.warning(
                    "Could not request job", query_id=query.id, error=exc.message
                )
                continue

            if result.created:
                results.append(result)

        return results

    def resubmit(self, query_id: str, *, trigger: str) -> JobRequestResult:
        """Create another job request for a query's tagged commit, confirmed again."""
        query = self.store.get_query(query_id)
        if query is None:
            raise QueryNotFoundError(f"No query with id {query_id!r} was received.")

        self.confirm_tag(query)
        return self.request_job(query, trigger=trigger, delivery_id=None, first=False)
