"""``responses`` mocks of the GitHub and Job Server calls the query flow makes.

Shapes follow GitHub's REST API; only the fields the app reads are filled in.
"""

import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any

import responses
from responses import matchers

from tests.conftest import GITHUB_URL, JOB_SERVER_URL, REPO

REPO_URL = f"{GITHUB_URL}/repos/{REPO}"
INSTALLATION_ID = 77


@dataclass
class FakeGitHub:
    """Counts calls and hands out predictable SHAs."""

    head: str = "a" * 40
    tokens_minted: int = 0
    calls: list[str] = field(default_factory=list)
    messages: dict[str, str] = field(default_factory=dict)
    trees: dict[str, str] = field(default_factory=dict)
    committers: dict[str, dict[str, str]] = field(default_factory=dict)
    branch: list[str] = field(default_factory=list)
    bodies: dict[str, list[Any]] = field(default_factory=dict)
    _numbers: Any = field(default_factory=lambda: itertools.count(1))

    def next_sha(self, prefix: str) -> str:
        return f"{prefix}{next(self._numbers):039x}"[:40]

    def record(self, name: str, request: Any) -> Any:
        self.calls.append(name)
        body = json.loads(request.body) if request.body else None
        self.bodies.setdefault(name, []).append(body)
        return body


def _json(status: int, body: Any) -> tuple[int, dict[str, str], str]:
    return status, {"Content-Type": "application/json"}, json.dumps(body)


def mock_github(mock: responses.RequestsMock, fake: FakeGitHub | None = None) -> FakeGitHub:
    """Register the installation, token and git data endpoints on ``mock``."""
    fake = fake or FakeGitHub()

    def installation(request: Any) -> Any:
        fake.record("installation", request)
        return _json(200, {"id": INSTALLATION_ID, "app_id": 12345})

    def access_token(request: Any) -> Any:
        fake.record("access_token", request)
        fake.tokens_minted += 1
        return _json(
            201,
            {"token": f"ghs_test{fake.tokens_minted}", "expires_at": "2099-01-01T00:00:00Z"},
        )

    def get_head(request: Any) -> Any:
        fake.record("get_ref", request)
        return _json(200, {"ref": "refs/heads/main", "object": {"type": "commit", "sha": fake.head}})

    def create_tree(request: Any) -> Any:
        fake.record("create_tree", request)
        return _json(201, {"sha": fake.next_sha("7"), "tree": [], "truncated": False})

    def create_commit(request: Any) -> Any:
        body = fake.record("create_commit", request)
        sha = fake.next_sha("c")
        fake.messages[sha] = body["message"]
        fake.trees[sha] = body["tree"]
        fake.committers[sha] = body["committer"]
        return _json(201, {"sha": sha, "html_url": f"https://github.example/commit/{sha}"})

    def update_ref(request: Any) -> Any:
        body = fake.record("update_ref", request)
        fake.head = body["sha"]
        fake.branch.insert(0, body["sha"])
        return _json(200, {"ref": "refs/heads/main", "object": {"type": "commit", "sha": body["sha"]}})

    def create_tag(request: Any) -> Any:
        fake.record("create_tag", request)
        return _json(201, {"sha": fake.next_sha("d"), "object": {"type": "commit"}})

    def create_ref(request: Any) -> Any:
        body = fake.record("create_ref", request)
        return _json(201, {"ref": body["ref"], "object": {"type": "tag", "sha": body["sha"]}})

    def list_commits(request: Any) -> Any:
        fake.record("list_commits", request)
        listed = [
            {
                "sha": sha,
                "html_url": "",
                "commit": {
                    "message": fake.messages[sha],
                    "tree": {"sha": fake.trees[sha]},
                    "committer": fake.committers[sha],
                },
            }
            for sha in fake.branch
        ]
        return _json(200, listed)

    mock.add_callback("GET", f"{REPO_URL}/installation", callback=installation)
    mock.add_callback(
        "GET", re.compile(re.escape(f"{REPO_URL}/commits") + r"(\?.*)?$"),
        callback=list_commits,
    )
    mock.add_callback(
        "POST",
        f"{GITHUB_URL}/app/installations/{INSTALLATION_ID}/access_tokens",
        callback=access_token,
    )
    mock.add_callback("GET", f"{REPO_URL}/git/ref/heads/main", callback=get_head)
    mock.add(
        "GET",
        re.compile(re.escape(f"{REPO_URL}/git/ref/tags/") + ".*"),
        json={"message": "Not Found"},
        status=404,
    )
    mock.add_callback("POST", f"{REPO_URL}/git/trees", callback=create_tree)
    mock.add_callback("POST", f"{REPO_URL}/git/commits", callback=create_commit)
    mock.add_callback("PATCH", f"{REPO_URL}/git/refs/heads/main", callback=update_ref)
    mock.add_callback("POST", f"{REPO_URL}/git/tags", callback=create_tag)
    mock.add_callback("POST", f"{REPO_URL}/git/refs", callback=create_ref)
    return fake


def mock_job_server(mock: responses.RequestsMock, *, status: int = 201) -> None:
    mock.add(
        "POST",
        f"{JOB_SERVER_URL}/api/v2/interactive/job-requests/",
        json={"id": 17, "url": f"{JOB_SERVER_URL}/job-requests/17/"},
        status=status,
        match=[matchers.header_matcher({"Authorization": "Bearer test-job-server-token"})],
    )
