"""The GitHub REST client: App authentication, retries, rate limits, error mapping."""

import json
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import requests
import responses
from responses import matchers

from github_app.github import (
    GitHubClient,
    GitHubResponseError,
    GitHubUnavailableError,
    NotFastForwardError,
    ReferenceExistsError,
    RepositoryNotInstalledError,
)

BASE_URL = "http://127.0.0.1:9/github"
REPO = "example-org/interactive-queries"
OTHER_REPO = "example-org/other-queries"
INSTALLATION_ID = 77
HEAD_SHA = "a" * 40
COMMIT_SHA = "c" * 40
TAG_SHA = "d" * 40
TREE_SHA = "7" * 40
NOW = 1_700_000_000.0

INSTALLATION_URL = f"{BASE_URL}/repos/{REPO}/installation"
TOKENS_URL = f"{BASE_URL}/app/installations/{INSTALLATION_ID}/access_tokens"
REPO_URL = f"{BASE_URL}/repos/{REPO}"
HEAD_URL = f"{REPO_URL}/git/ref/heads/main"
TREES_URL = f"{REPO_URL}/git/trees"


class FakeTime:
    """A clock that only moves when ``sleep`` is called, recording every wait."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def github(private_key_pem: str, fake_time: FakeTime) -> GitHubClient:
    return GitHubClient(
        app_id="12345",
        private_key=private_key_pem,
        base_url=BASE_URL,
        clock=fake_time.clock,
        sleep=fake_time.sleep,
    )


@pytest.fixture
def mock() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as requests_mock:
        yield requests_mock


def json_reply(status: int, body: Any, headers: dict[str, str] | None = None) -> Any:
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    return status, all_headers, json.dumps(body)


def add_installation(mock: responses.RequestsMock, repo: str = REPO) -> None:
    mock.add(
        "GET",
        f"{BASE_URL}/repos/{repo}/installation",
        json={"id": INSTALLATION_ID, "app_id": 12345},
    )


def add_token_endpoint(mock: responses.RequestsMock) -> list[str]:
    """Serve a new token on each call and return the list of tokens handed out."""
    minted: list[str] = []

    def mint(request: Any) -> Any:
        minted.append(f"ghs_test{len(minted) + 1}")
        body = {"token": minted[-1], "expires_at": "2099-01-01T00:00:00Z"}
        return json_reply(201, body)

    mock.add_callback("POST", TOKENS_URL, callback=mint)
    return minted


def add_sequence(
    mock: responses.RequestsMock, method: str, url: str, replies: list[Any]
) -> None:
    """Register ``replies`` to return in turn, each ``(status, body[, headers])`` or
    an exception to raise. The last reply repeats once the list runs out.
    """
    remaining = list(replies)

    def reply(request: Any) -> Any:
        item = remaining.pop(0) if len(remaining) > 1 else remaining[0]
        if isinstance(item, Exception):
            raise item
        status, body, *headers = item
        return json_reply(status, body, headers[0] if headers else None)

    mock.add_callback(method, url, callback=reply)


def calls_to(mock: responses.RequestsMock, method: str, url: str) -> list[Any]:
    return [
        call
        for call in mock.calls
        if call.request.method == method and call.request.url == url
    ]


def authenticated(mock: responses.RequestsMock) -> list[str]:
    add_installation(mock)
    return add_token_endpoint(mock)


HEAD_OK = (
    200,
    {"ref": "refs/heads/main", "object": {"type": "commit", "sha": HEAD_SHA}},
)
TREE_OK = (201, {"sha": TREE_SHA, "tree": [], "truncated": False})


# -- authentication -----------------------------------------------------------


def test_installation_looked_up_once_per_repository(
    github: GitHubClient, mock: responses.RequestsMock
) -> None:
    authenticated(mock)
    add_installation(mock, OTHER_REPO)

    first = github.installation_id(REPO)
    second = github.installation_id(REPO)
    other = github.installation_id(OTHER_REPO)

    assert first == INSTALLATION_ID
    assert second == INSTALLATION_ID
    assert other == INSTALLATION_ID
    assert len(calls_to(mock, "GET", INSTALLATION_URL)) == 1
    other_url = f"{BASE_URL}/repos/{OTHER_REPO}/installation"
    assert len(calls_to(mock, "GET", other_url)) == 1


def test_installation_token_minted_once_and_reused(
    github: GitHubClient, mock: responses.RequestsMock
) -> None:
    minted = authenticated(mock)
    add_sequence(mock, "GET", HEAD_URL, [HEAD_OK])

    github.get_branch_head(REPO, "main")
    github.get_branch_head(REPO, "main")

    head_calls = calls_to(mock, "GET", HEAD_URL)
    assert minted == ["ghs_test1"]
    assert len(head_calls) == 2
    assert head_calls[0].request.headers["Authorization"] == "token ghs_test1"
    assert head_calls[1].request.headers["Authorization"] == "token ghs_test1"


@pytest.mark.parametrize(
    ("method", "url"), [("GET", INSTALLATION_URL), ("POST", TOKENS_URL)]
)
def test_app_jwt_sent_to_app_endpoints(
    github: GitHubClient,
    mock: responses.RequestsMock,
    public_key_pem: bytes,
    fake_time: FakeTime,
    method: str,
    url: str,
) -> None:
    authenticated(mock)
    add_sequence(mock, "GET", HEAD_URL, [HEAD_OK])

    github.get_branch_head(REPO, "main")

    [call] = calls_to(mock, method, url)
    scheme, _, token = call.request.headers["Authorization"].partition(" ")
    # The JWT follows the client's clock, which need not be the real one.
    options = {"verify_exp": False, "verify_iat": False}
    claims = jwt.decode(token, public_key_pem, algorithms=["RS256"], options=options)
    assert scheme == "Bearer"
    assert claims["iss"] == "12345"
    assert claims["iat"] == int(fake_time.now) - 60
    assert claims["exp"] > fake_time.now
    assert claims["exp"] - claims["iat"] <= 600


def test_installation_not_found_names_repository(
    github: GitHubClient, mock: responses.RequestsMock
) -> None:
    mock.add("GET", INSTALLATION_URL, status=404, json={"message": "Not Found"})

    with pytest.raises(RepositoryNotInstalledError, match=REPO):
        github.installation_id(REPO)

    assert len(calls_to(mock, "GET", INSTALLATION_URL)) == 1


def test_token_rejected_once_is_renewed(
    github: GitHubClient, mock: responses.RequestsMock
) -> None:
    minted = authenticated(mock)
    unauthorized = (401, {"message": "Bad credentials"})
    add_sequence(mock, "GET", HEAD_URL, [HEAD_OK, unauthorized, HEAD_OK])
    github.get_branch_head(REPO, "main")

    head = github.get_branch_head(REPO, "main")

    head_calls = calls_to(mock, "GET", HEAD_URL)
    assert head == HEAD_SHA
    assert minted == ["ghs_test1", "ghs_test2"]
    assert len(head_calls) == 3
    assert head_calls[1].request.headers["Authorization"] == "token ghs_test1"
    assert head_calls[2].request.headers["Authorization"] == "token ghs_test2"


def test_token_rejected_twice_raises(
    github: GitHubClient, mock: responses.RequestsMock
) -> None:
    minted = authenticated(mock)
    unauthorized = (401, {"message": "Bad credentials"})
    # A third reply that succeeds shows up as a missing error if the renewal repeats.
    add_sequence(mock, "GET", HEAD_URL, [unauthorized, unauthorized, HEAD_OK])

    with pytest.raises(GitHubResponseError, match="Bad credentials") as info:
        github.get_branch_head(REPO, "main")

    assert info.value.status == 401
    assert minted == ["ghs_test1", "ghs_test2"]
    assert len(calls_to(mock, "GET", HEAD_URL)) == 2


# -- retries --------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_transient_status_retried(
    github: GitHubClient,
    mock: responses.RequestsMock,
    fake_time: FakeTime,
    status: int,
) -> None:
    authenticated(mock)
    failure = (status, {"message": "Server Error"})
    add_sequence(mock, "GET", HEAD_URL, [failure, HEAD_OK])

    head = github.get_branch_head(REPO, "main")

    assert head == HEAD_SHA
    assert len(calls_to(mock, "GET", HEAD_URL)) == 2
    assert len(fake_time.sleeps) == 1


@pytest.mark.parametrize(
    "error",
    [
        requests.ConnectionError("connection refused"),
        requests.Timeout("read timed out"),
    ],
)
def test_connection_error_retried(
    github: GitHubClient,
    mock: responses.RequestsMock,
    fake_time: FakeTime,
    error: Exception,
) -> None:
    authenticated(mock)
    add_sequence(mock, "GET", HEAD_URL, [error, HEAD_OK])

    head = github.get_branch_head(REPO, "main")

    assert head == HEAD_SHA
    assert len(calls_to(mock, "GET", HEAD_URL)) == 2
    assert len(fake_time.sleeps) == 1


def test_retry_delay_grows(
    github: GitHubClient, mock: responses.RequestsMock, fake_time: FakeTime
) -> None:
    authenticated(mock)
    failure = (502, {"message": "Bad Gateway"})
    add_sequence(mock, "GET", HEAD_URL, [failure, failure, failure, HEAD_OK])

    github.get_branch_head(REPO, "main")

    first, second, third = fake_time.sleeps
    # Each delay is drawn from half to all of a base that doubles per attempt.
    assert 0.1 <= first <= 0.2
    assert 0.2 <= second <= 0.4
    assert 0.4 <= third <= 0.8


def test_transient_failures_past_budget_raise(
    github: GitHubClient, mock: responses.RequestsMock, fake_time: FakeTime
) -> None:
    authenticated(mock)
    add_sequence(mock, "GET", HEAD_URL, [(503, {"message": "Service Unavailable"})])

    with pytest.raises(GitHubUnavailableError, match="503"):
        github.get_branch_head(REPO, "main")

    attempts = len(calls_to(mock, "GET", HEAD_URL))
    assert attempts > 2
    assert attempts == len(fake_time.sleeps) + 1
    assert sum(fake_time.sleeps) <= 8.0


def test_connection_errors_past_budget_raise(
    github: GitHubClient, mock: responses.RequestsMock, fake_time: FakeTime
) -> None:
    authenticated(mock)
    add_sequence(mock, "GET", HEAD_URL, [requests.ConnectionError("refused")])

    with pytest.raises(GitHubUnavailableError, match="ConnectionError"):
        github.get_branch_head(REPO, "main")

    assert sum(fake_time.sleeps) <= 8.0


@pytest.mark.parametrize("status", [403, 429])
def test_retry_after_waits_and_writes_once(
    github: GitHubClient,
    mock: responses.RequestsMock,
    fake_time: FakeTime,
    status: int,
) -> None:
    authenticated(mock)
    limited = (
        status,
        {"message": "You have exceeded a secondary rate limit."},
        {"Retry-After": "3"},
    )
    extra = (500, {"message": "a second write was sent"})
    add_sequence(mock, "POST", TREES_URL, [limited, TREE_OK, extra])

    tree = github.create_tree(REPO, {"analysis/measures.py": "print(1)\n"})

    assert tree == TREE_SHA
    assert fake_time.sleeps == [3.0]
    assert len(calls_to(mock, "POST", TREES_URL)) == 2


def test_primary_rate_limit_waits_until_reset(
    github: GitHubClient, mock: responses.RequestsMock, fake_time: FakeTime
) -> None:
    authenticated(mock)
    limited = (
        403,
        {"message": "API rate limit exceeded"},
        {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(NOW) + 4)},
    )
    add_sequence(mock, "GET", HEAD_URL, [limited, HEAD_OK])

    head = github.get_branch_head(REPO, "main")

    assert head == HEAD_SHA
    assert fake_time.sleeps == [4.0]


def test_rate_limit_beyond_budget_raises_without_waiting(
    github: GitHubClient, mock: responses.RequestsMock, fake_time: FakeTime
) -> None:
    authenticated(mock)
    limited = (429, {"message": "Too Many Requests"}, {"Retry-After": "3600"})
    add_sequence(mock, "GET", HEAD_URL, [limited])

    with pytest.raises(GitHubUnavailableError, match="429"):
        github.get_branch_head(REPO, "main")

    assert fake_time.sleeps == []
    assert len(calls_to(mock, "GET", HEAD_URL)) == 1


def test_forbidden_without_rate_limit_not_retried(
    github: GitHubClient, mock: responses.RequestsMock, fake_time: FakeTime
) -> None:
    authenticated(mock)
    forbidden = (403, {"message": "Resource not accessible by integration"})
    add_sequence(mock, "POST", TREES_URL, [forbidden, TREE_OK])

    with pytest.raises(GitHubResponseError, match="not accessible") as info:
        github.create_tree(REPO, {"project.yaml": "version: '4.0'\n"})

    assert info.value.status == 403
    assert not isinstance(info.value, GitHubUnavailableError)
    assert len(calls_to(mock, "POST", TREES_URL)) == 1
    assert fake_time.sleeps == []


# -- git data -------------------------------------------------------------------


def test_fast_forward_never_forces(
    github: GitHubClient, mock: responses.RequestsMock
) -> None:
    authenticated(mock)
    mock.add(
        "PATCH",
        f"{REPO_URL}/git/refs/heads/main",
        json={
            "ref": "refs/heads/main",
            "object": {"type": "commit", "sha": COMMIT_SHA},
        },
        match=[matchers.json_params_matcher({"sha": COMMIT_SHA, "force": False})],
    )

    github.fast_forward(REPO, "main", COMMIT_SHA)

    assert len(calls_to(mock, "PATCH", f"{REPO_URL}/git/refs/heads/main")) == 1


def test_fast_forward_rejected_raises_not_fast_forward(
    github: GitHubClient, mock: responses.RequestsMock
) -> None:
    authenticated(mock)
    mock.add(
        "PATCH",
        f"{REPO_URL}/git/refs/heads/main",
        status=422,
        json={"message": "Update is not a fast forward"},
    )

    with pytest.raises(NotFastForwardError, match="not a fast forward") as info:
        github.fast_forward(REPO, "main", COMMIT_SHA)

    assert info.value.status == 422


@pytest.mark.parametrize(
    "message",
    [
        "Protected branch update failed for refs/heads/main.",
        "Changes must be made through a pull request.",
        "Reference does not exist",
    ],
)
def test_fast_forward_other_422_is_response_error(
    github: GitHubClient, mock: responses.RequestsMock, message: str
) -> None:
    authenticated(mock)
    mock.add(
        "PATCH",
        f"{REPO_URL}/git/refs/heads/main",
        status=422,
        json={"message": message},
    )

    with pytest.raises(GitHubResponseError, match=message[:20]) as info:
        github.fast_forward(REPO, "main", COMMIT_SHA)

    assert not isinstance(info.value, NotFastForwardError)
    assert info.value.status == 422


def test_create_ref_existing_raises_reference_exists(
    github: GitHubClient, mock: responses.RequestsMock
) -> None:
    authenticated(mock)
    mock.add(
        "POST",
        f"{REPO_URL}/git/refs",
        status=422,
        json={"message": "Reference already exists"},
        match=[matchers.json_params_matcher({"ref": "refs/tags/q1", "sha": TAG_SHA})],
    )

    with pytest.raises(ReferenceExistsError, match="Reference already exists"):
        github.create_ref(REPO, "refs/tags/q1", TAG_SHA)


def test_create_ref_other_422_is_response_error(
    github: GitHubClient, mock: responses.RequestsMock
) -> None:
    authenticated(mock)
    mock.add(
        "POST",
        f"{REPO_URL}/git/refs",
        status=422,
        json={"message": "Object does not exist"},
    )

    with pytest.raises(GitHubResponseError, match="Object does not exist") as info:
        github.create_ref(REPO, "refs/tags/q1", TAG_SHA)

    assert not isinstance(info.value, ReferenceExistsError)


def test_peel_tag_follows_annotated_tag(
    github: GitHubClient, mock: responses.RequestsMock
) -> None:
    authenticated(mock)
    mock.add(
        "GET",
        f"{REPO_URL}/git/ref/tags/q1",
        json={"ref": "refs/tags/q1", "object": {"type": "tag", "sha": TAG_SHA}},
    )
    mock.add(
        "GET",
        f"{REPO_URL}/git/tags/{TAG_SHA}",
        json={
            "sha": TAG_SHA,
            "tag": "q1",
            "object": {"type": "commit", "sha": COMMIT_SHA},
        },
    )

    commit = github.peel_tag(REPO, "q1")

    assert commit == COMMIT_SHA
    assert len(calls_to(mock, "GET", f"{REPO_URL}/git/tags/{TAG_SHA}")) == 1


def test_peel_tag_lightweight_returns_commit(
    github: GitHubClient, mock: responses.RequestsMock
) -> None:
    authenticated(mock)
    mock.add(
        "GET",
        f"{REPO_URL}/git/ref/tags/q1",
        json={"ref": "refs/tags/q1", "object": {"type": "commit", "sha": COMMIT_SHA}},
    )

    commit = github.peel_tag(REPO, "q1")

    assert commit == COMMIT_SHA
    assert not [call for call in mock.calls if "/git/tags/" in call.request.url]


def test_peel_tag_absent_returns_none(
    github: GitHubClient, mock: responses.RequestsMock
) -> None:
    authenticated(mock)
    mock.add(
        "GET", f"{REPO_URL}/git/ref/tags/q1", status=404, json={"message": "Not Found"}
    )

    commit = github.peel_tag(REPO, "q1")

    assert commit is None


def test_peel_tag_pointing_at_tree_raises(
    github: GitHubClient, mock: responses.RequestsMock
) -> None:
    authenticated(mock)
    mock.add(
        "GET",
        f"{REPO_URL}/git/ref/tags/q1",
        json={"ref": "refs/tags/q1", "object": {"type": "tree", "sha": TREE_SHA}},
    )

    with pytest.raises(GitHubResponseError, match="points at a tree"):
        github.peel_tag(REPO, "q1")


@pytest.mark.parametrize(
    ("status", "expected"),
    [("behind", True), ("identical", True), ("diverged", False), ("ahead", False)],
)
def test_is_on_branch_by_compare_status(
    github: GitHubClient, mock: responses.RequestsMock, status: str, expected: bool
) -> None:
    """The branch is the base and the commit the head: ``behind`` is reachable."""
    authenticated(mock)
    mock.add(
        "GET",
        f"{REPO_URL}/compare/main...{COMMIT_SHA}",
        json={"status": status, "ahead_by": 0, "behind_by": 1},
    )

    on_branch = github.is_on_branch(REPO, COMMIT_SHA, "main")

    assert on_branch is expected


def test_is_on_branch_no_common_ancestor(
    github: GitHubClient, mock: responses.RequestsMock
) -> None:
    authenticated(mock)
    mock.add(
        "GET",
        f"{REPO_URL}/compare/main...{COMMIT_SHA}",
        status=404,
        json={"message": "No common ancestor between main and the commit."},
    )

    on_branch = github.is_on_branch(REPO, COMMIT_SHA, "main")

    assert on_branch is False


def test_get_branch_head_missing_branch_raises(
    github: GitHubClient, mock: responses.RequestsMock
) -> None:
    authenticated(mock)
    mock.add("GET", HEAD_URL, status=404, json={"message": "Not Found"})

    with pytest.raises(GitHubResponseError, match="QUERY_BRANCH") as info:
        github.get_branch_head(REPO, "main")

    assert info.value.status == 404
