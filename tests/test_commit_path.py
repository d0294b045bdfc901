"""The commit path under races, GitHub faults and crashes, checked in git itself.

Each test drives the app against the sandbox's real bare repository and then
asserts on the branch and tags, not only on HTTP status codes.
"""

import copy
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from github_app.app import create_app
from github_app.queries import QueryService
from sandbox.git import ZERO_SHA, BareRepository, Signature
from sandbox.github import GitHubSandbox
from tests.conftest import REPO
from tests.test_api import QUERY
from tests.test_end_to_end import (  # noqa: F401 - fixtures
    Stack,
    app_settings_changes,
    stack,
)

PATCH_REF = "PATCH /repos/{owner}/{repo}/git/refs/{ref}"
POST_COMMIT = "POST /repos/{owner}/{repo}/git/commits"
POST_TREE = "POST /repos/{owner}/{repo}/git/trees"
POST_TAG = "POST /repos/{owner}/{repo}/git/tags"
POST_REF = "POST /repos/{owner}/{repo}/git/refs"
ACCESS_TOKEN = "POST /app/installations/{installation_id}/access_tokens"


class SimulatedCrash(BaseException):
    """Stands for the worker being killed: not an Exception, so nothing cleans up."""


def query_body(query_id: str = QUERY["id"]) -> dict[str, Any]:
    body = copy.deepcopy(QUERY)
    body["id"] = query_id
    return body


def commits_of(git: BareRepository, query_id: str) -> list[str]:
    """Return the branch commits whose Query-Id trailer names ``query_id``."""
    return [
        sha
        for sha in git.first_parent_log("refs/heads/main")
        if f"Query-Id: {query_id}" in git.read_commit(sha).message.splitlines()
    ]


def tag_refs(git: BareRepository) -> dict[str, str]:
    return git.list_refs("refs/tags/")


def assert_committed_once(github: GitHubSandbox, query_id: str) -> str:
    git = github.repository(REPO)
    commits = commits_of(git, query_id)
    assert len(commits) == 1, f"{query_id} is on the branch {len(commits)} times"
    tag = git.read_ref(f"refs/tags/{query_id}")
    assert tag is not None
    assert git.object_type(tag) == "tag"
    assert git.peel(tag) == commits[0]
    assert github.forced_updates == []
    return commits[0]


class TestRaces:
    def test_branch_moved_rebuilds_on_new_head(self, stack: Stack) -> None:
        pushed: list[str] = []

        def push_first(endpoint: str, params: dict[str, str]) -> None:
            pushed.append(
                stack.github.push_commit(REPO, {"NOTES.md": b"x"}, "Someone else")
            )

        stack.github.add_hook(push_first, endpoint=PATCH_REF, once=True)

        response = stack.post_query(QUERY)

        assert response.status_code == 201
        sha = assert_committed_once(stack.github, QUERY["id"])
        git = stack.github.repository(REPO)
        assert git.read_commit(sha).parents == pushed
        assert stack.github.call_counts()[PATCH_REF] == 2

    def test_branch_protection_refusal_fails_clearly(self, stack: Stack) -> None:
        message = "Changes must be made through a pull request."
        stack.github.fail_call(PATCH_REF, 422, body={"message": message})

        response = stack.post_query(QUERY)

        assert response.status_code == 502
        assert message in response.json()["error"]["message"]
        assert stack.get_query(QUERY["id"])["state"] == "failed"
        assert stack.github.call_counts()[PATCH_REF] == 1
        assert tag_refs(stack.github.repository(REPO)) == {}

    def test_replay_after_success_makes_no_calls(self, stack: Stack) -> None:
        first = stack.post_query(QUERY).json()
        calls_before = len(stack.github.calls)

        replay = stack.post_query(QUERY)

        assert replay.status_code == 200
        assert replay.json()["sha"] == first["sha"]
        assert len(stack.github.calls) == calls_before or all(
            call.method == "GET" for call in stack.github.calls[calls_before:]
        )
        assert_committed_once(stack.github, QUERY["id"])


class TestExistingTags:
    def test_tag_pointing_elsewhere_fails_query(self, stack: Stack) -> None:
        git = stack.github.repository(REPO)
        initial = git.read_ref("refs/heads/main")
        assert initial is not None
        someone = Signature("Someone", "someone@example.org", datetime.now(UTC))
        other_tag = git.mktag(initial, "commit", QUERY["id"], "Not a query\n", someone)
        assert git.update_ref(f"refs/tags/{QUERY['id']}", other_tag, ZERO_SHA)

        response = stack.post_query(QUERY)

        assert response.status_code == 422
        assert response.json()["error"]["code"] == "tag_refused"
        assert stack.get_query(QUERY["id"])["state"] == "failed"
        assert git.read_ref(f"refs/tags/{QUERY['id']}") == other_tag
        assert stack.job_server.job_requests_for(QUERY["id"]) == []

    @pytest.mark.parametrize(
        "app_settings_changes", [{"github_retry_budget": 5}], indirect=True
    )
    def test_tag_created_by_lost_response_is_success(self, stack: Stack) -> None:
        # The first call creates the ref; the retry finds it already exists.
        stack.github.fail_call(POST_REF, 502, count=2, after_handling=True)

        response = stack.post_query(QUERY)

        assert response.status_code == 201
        assert_committed_once(stack.github, QUERY["id"])


class TestTransientFaults:
    @pytest.mark.parametrize("status", [500, 502, 503])
    @pytest.mark.parametrize("endpoint", [POST_TREE, POST_COMMIT, PATCH_REF, POST_REF])
    def test_server_error_is_retried(
        self, stack: Stack, status: int, endpoint: str
    ) -> None:
        stack.github.fail_call(endpoint, status)

        response = stack.post_query(QUERY)

        assert response.status_code == 201
        assert_committed_once(stack.github, QUERY["id"])

    @pytest.mark.parametrize("endpoint", [PATCH_REF, POST_REF])
    def test_lost_response_is_not_repeated(self, stack: Stack, endpoint: str) -> None:
        stack.github.fail_call(endpoint, 502, after_handling=True)

        response = stack.post_query(QUERY)

        assert response.status_code == 201
        assert_committed_once(stack.github, QUERY["id"])

    @pytest.mark.parametrize(
        "app_settings_changes", [{"github_retry_budget": 5}], indirect=True
    )
    @pytest.mark.parametrize(
        ("status", "headers"),
        [
            (403, {"Retry-After": "1"}),
            (429, {"Retry-After": "1"}),
            (429, {}),
            (403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "0"}),
        ],
    )
    def test_rate_limit_waits_and_retries(
        self, stack: Stack, status: int, headers: dict[str, str]
    ) -> None:
        body = {"message": "You have exceeded a secondary rate limit."}
        stack.github.fail_call(POST_COMMIT, status, headers=headers, body=body)

        response = stack.post_query(QUERY)

        assert response.status_code == 201
        assert stack.github.call_counts()[POST_COMMIT] == 2
        assert_committed_once(stack.github, QUERY["id"])

    def test_permission_403_is_not_retried(self, stack: Stack) -> None:
        body = {"message": "Resource not accessible by integration"}
        stack.github.fail_call(POST_COMMIT, 403, body=body)

        response = stack.post_query(QUERY)

        assert response.status_code == 502
        assert "Resource not accessible" in response.json()["error"]["message"]
        assert stack.github.call_counts()[POST_COMMIT] == 1
        assert commits_of(stack.github.repository(REPO), QUERY["id"]) == []

    def test_token_revoked_mid_flow_is_renewed_once(self, stack: Stack) -> None:
        stack.github.add_hook(
            lambda endpoint, params: stack.github.expire_tokens(),
            endpoint=POST_TREE,
            after=True,
            once=True,
        )

        response = stack.post_query(QUERY)

        assert response.status_code == 201
        assert stack.github.call_counts()[ACCESS_TOKEN] == 2
        assert_committed_once(stack.github, QUERY["id"])

    def test_repeated_401_fails_without_looping(self, stack: Stack) -> None:
        stack.github.fail_call(
            POST_COMMIT, 401, count=5, body={"message": "Bad credentials"}
        )

        response = stack.post_query(QUERY)

        assert response.status_code == 502
        assert "Bad credentials" in response.json()["error"]["message"]
        assert stack.github.call_counts()[POST_COMMIT] == 2

    def test_short_lived_tokens_are_renewed(self, stack: Stack) -> None:
        stack.github.token_lifetime = 1

        response = stack.post_query(QUERY)

        assert response.status_code == 201
        assert_committed_once(stack.github, QUERY["id"])

    def test_past_budget_is_503_and_replay_resumes(self, stack: Stack) -> None:
        stack.github.fail_call(POST_TAG, 503, count=1000)

        first = stack.post_query(QUERY)
        stack.github.clear_faults()
        replay = stack.post_query(QUERY)

        assert first.status_code == 503
        assert "send the same request again" in first.json()["error"]["message"]
        assert replay.status_code == 200
        assert replay.json()["state"] in ("tagged", "job_requested")
        assert_committed_once(stack.github, QUERY["id"])

    @pytest.mark.parametrize(
        "app_settings_changes", [{"http_timeout": 1, "github_retry_budget": 5}],
        indirect=True,
    )
    def test_slow_call_times_out_and_is_retried(self, stack: Stack) -> None:
        stack.github.add_hook(
            lambda endpoint, params: time.sleep(1.5), endpoint=POST_COMMIT, once=True
        )

        response = stack.post_query(QUERY)
        # The sandbox records the timed-out call only when its hook returns.
        deadline = time.monotonic() + 5
        while stack.github.call_counts()[POST_COMMIT] < 2:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)

        assert response.status_code == 201
        assert stack.github.call_counts()[POST_COMMIT] == 2
        assert_committed_once(stack.github, QUERY["id"])


def fresh_service(stack: Stack) -> QueryService:
    """Build a new app instance on the stack's database, as after a restart."""
    app = create_app(replace(stack.settings, query_lease_seconds=0.2))
    service: QueryService = app.extensions["query_service"]
    return service


def crash_on_state(service: QueryService, state: str) -> None:
    """Make recording ``state`` kill the worker, after GitHub already changed."""
    record = service.store.advance_query

    def advance(query_id: str, new_state: str, **fields: Any) -> Any:
        if new_state == state:
            raise SimulatedCrash(state)
        return record(query_id, new_state, **fields)

    service.store.advance_query = advance  # type: ignore[method-assign]


def crash_on_call(service: QueryService, method: str) -> None:
    """Make a GitHub call kill the worker before it is sent."""

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise SimulatedCrash(method)

    setattr(service.github, method, crash)


CRASH_POINTS = {
    "after commit, before branch moves": lambda s: crash_on_call(s, "fast_forward"),
    "after branch moves, before store": lambda s: crash_on_state(s, "committed"),
    "after store, before tag": lambda s: crash_on_call(s, "create_tag"),
    "after tag, before store": lambda s: crash_on_state(s, "tagged"),
}


class TestCrashes:
    @pytest.mark.parametrize("point", CRASH_POINTS)
    @pytest.mark.parametrize("resume", ["replay", "reconcile"])
    def test_crash_resumes_without_duplicates(
        self, stack: Stack, point: str, resume: str
    ) -> None:
        crashing = fresh_service(stack)
        CRASH_POINTS[point](crashing)
        with pytest.raises(SimulatedCrash):
            crashing.submit(query_body())
        time.sleep(0.3)  # The crashed worker's lease expires.

        service = fresh_service(stack)
        if resume == "replay":
            _, created = service.submit(query_body())
            assert created is False
        else:
            service.reconcile()
        jobs = stack.wait_for_job_requests(QUERY["id"])

        query = service.store.get_query(QUERY["id"])
        assert query is not None
        assert query.state in ("tagged", "job_requested")
        sha = assert_committed_once(stack.github, QUERY["id"])
        assert query.commit_sha == sha
        assert query.tag_sha == stack.github.repository(REPO).read_ref(
            f"refs/tags/{QUERY['id']}"
        )
        assert list(tag_refs(stack.github.repository(REPO))) == [
            f"refs/tags/{QUERY['id']}"
        ]
        assert [job.body["sha"] for job in jobs] == [sha]

    def test_concurrent_replay_waits_for_first_worker(self, stack: Stack) -> None:
        slow = fresh_service(stack)
        stack.github.add_hook(
            lambda endpoint, params: time.sleep(0.5), endpoint=POST_COMMIT, once=True
        )
        import threading

        results: list[Any] = []
        worker = threading.Thread(target=lambda: results.append(slow.submit(query_body())))
        worker.start()
        time.sleep(0.2)

        replay = stack.post_query(QUERY)
        worker.join()

        assert replay.status_code == 200
        assert replay.json()["sha"] == results[0][0].commit_sha
        assert_committed_once(stack.github, QUERY["id"])
