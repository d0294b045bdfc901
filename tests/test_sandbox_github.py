"""Tests for the GitHub stand-in, driven through PyGithub as the app drives it."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import github
import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from github import Auth, InputGitAuthor, InputGitTreeElement

from sandbox.__main__ import load_or_create_key
from sandbox.git import ZERO_SHA
from sandbox.github import GitHubSandbox
from sandbox.servers import RunningServer, serve

APP_ID = "4242"
REPO = "example-org/interactive-queries"
SECRET = "webhook-secret"
PATCH_REF = "PATCH /repos/{owner}/{repo}/git/refs/{ref}"
GET_REF = "GET /repos/{owner}/{repo}/git/ref/{ref}"


@pytest.fixture(scope="module")
def app_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def app_key_pem(app_key: rsa.RSAPrivateKey) -> str:
    return app_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


class Receiver:
    """A webhook endpoint that records each delivery and responds with ``status``."""

    def __init__(self) -> None:
        self.status = 200
        #: When set, each delivery waits here for the others before the response.
        self.barrier: threading.Barrier | None = None
        #: When set, each delivery waits for this event before it is recorded.
        self.release: threading.Event | None = None
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        headers = {
            key[5:].replace("_", "-").title(): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        headers["Content-Type"] = environ.get("CONTENT_TYPE", "")
        status = self.status
        try:
            if self.barrier is not None:
                self.barrier.wait(timeout=5)
        except threading.BrokenBarrierError:
            status = 500

        if self.release is not None:
            self.release.wait(timeout=5)

        with self.lock:
            self.received.append((headers, body))

        start_response(f"{status} Status", [("Content-Type", "application/json")])
        return [b'{"ok": true}']

    def events(self) -> list[str]:
        with self.lock:
            return [headers["X-Github-Event"] for headers, _ in self.received]

    def payloads(self, event: str) -> list[dict[str, Any]]:
        with self.lock:
            return [
                json.loads(body)
                for headers, body in self.received
                if headers["X-Github-Event"] == event
            ]


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, RunningServer]]:
    app = Receiver()
    with serve(app) as server:
        yield app, server


@pytest.fixture
def sandbox(
    tmp_path: Path,
    app_key: rsa.RSAPrivateKey,
    receiver: tuple[Receiver, RunningServer],
) -> GitHubSandbox:
    public_key = app_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return GitHubSandbox(
        root=tmp_path / "github",
        app_id=APP_ID,
        public_key_pem=public_key,
        repositories=[REPO],
        webhook_url=receiver[1].url + "/webhooks",
        webhook_secret=SECRET,
    )


@pytest.fixture
def server(sandbox: GitHubSandbox) -> Iterator[RunningServer]:
    with serve(sandbox.wsgi_app) as running:
        yield running

    sandbox.wait_for_deliveries(timeout=15)


@pytest.fixture
def integration(
    server: RunningServer, app_key_pem: str
) -> Iterator[github.GithubIntegration]:
    client = github.GithubIntegration(
        auth=Auth.AppAuth(APP_ID, app_key_pem),
        base_url=server.url,
        retry=None,
        seconds_between_requests=None,
        seconds_between_writes=None,
    )
    yield client
    client.close()


def token_client(server: RunningServer, token: str) -> github.Github:
    return github.Github(
        auth=Auth.Token(token),
        base_url=server.url,
        retry=None,
        seconds_between_requests=None,
        seconds_between_writes=None,
    )


@pytest.fixture
def gh(
    server: RunningServer, integration: github.GithubIntegration
) -> Iterator[github.Github]:
    installation = integration.get_repo_installation(*REPO.split("/"))
    token = integration.get_access_token(installation.id).token
    client = token_client(server, token)
    yield client
    client.close()


def app_jwt(key_pem: str, **claims: Any) -> str:
    now = int(time.time())
    body = {"iat": now - 60, "exp": now + 540, "iss": APP_ID} | claims
    return jwt.encode(body, key_pem, algorithm="RS256")


def commit_files(
    repo: Any, files: dict[str, str], message: str, parent: str
) -> github.GitCommit.GitCommit:
    elements = [
        InputGitTreeElement(path, "100644", "blob", content=content)
        for path, content in files.items()
    ]
    tree = repo.create_git_tree(elements)
    author = InputGitAuthor("Jane Doe", "jane@example.org", "2024-05-01T09:30:00Z")
    committer = InputGitAuthor("Query Bot", "bot@example.org", "2024-05-01T09:31:00Z")
    return repo.create_git_commit(
        message, tree, [repo.get_git_commit(parent)], author, committer
    )


def check_signature(headers: dict[str, str], body: bytes) -> bool:
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers["X-Hub-Signature-256"], expected)


class TestAppAuthentication:
    def test_get_app_with_jwt(self, integration: github.GithubIntegration) -> None:
        app = integration.get_app()

        assert app.id == int(APP_ID)
        assert app.slug == "sandbox-app"
        assert app.permissions == {"contents": "write", "metadata": "read"}

    def test_installation_and_token(
        self, integration: github.GithubIntegration
    ) -> None:
        installation = integration.get_repo_installation(*REPO.split("/"))
        authorization = integration.get_access_token(installation.id)

        assert installation.id == 1
        assert authorization.token.startswith("ghs_")
        assert len(authorization.token) == 40
        assert authorization.permissions == {"contents": "write", "metadata": "read"}
        assert authorization.repository_selection == "selected"
        remaining = authorization.expires_at.timestamp() - time.time()
        assert 3500 < remaining <= 3600

    def test_list_and_get_installation(
        self, integration: github.GithubIntegration
    ) -> None:
        listed = [installation.id for installation in integration.get_installations()]
        installation = integration.get_app_installation(1)

        assert listed == [1]
        assert installation.app_id == int(APP_ID)
        assert installation.permissions == {"contents": "write", "metadata": "read"}

    def test_installation_of_unknown_repo_is_404(
        self, integration: github.GithubIntegration
    ) -> None:
        with pytest.raises(github.UnknownObjectException):
            integration.get_repo_installation("example-org", "other")

    def test_token_for_unknown_installation_is_404(
        self, integration: github.GithubIntegration
    ) -> None:
        with pytest.raises(github.UnknownObjectException):
            integration.get_access_token(99)

    @pytest.mark.parametrize(
        ("claims", "message"),
        [
            ({"iss": "999"}, "'Issuer' claim"),
            ({"exp": -10}, "must be in the future"),
            ({"iat": -60, "exp": 600}, "too far in the future"),
            ({"exp": 900}, "too far in the future"),
            ({"iat": 120, "exp": 300}, "'Issued at' claim"),
        ],
    )
    def test_invalid_jwt_claims_are_401(
        self,
        server: RunningServer,
        app_key_pem: str,
        claims: dict[str, Any],
        message: str,
    ) -> None:
        """``iat`` and ``exp`` are seconds from when the test runs, not from when
        the suite was collected, which can be minutes earlier."""
        now = int(time.time())
        times = {key: now + claims[key] for key in ("iat", "exp") if key in claims}
        token = app_jwt(app_key_pem, **(claims | times))

        response = requests.get(
            f"{server.url}/app", headers={"Authorization": f"Bearer {token}"}, timeout=5
        )

        assert response.status_code == 401
        assert message in response.json()["message"]

    def test_jwt_signed_by_other_key_is_401(self, server: RunningServer) -> None:
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        other_pem = other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        client = github.GithubIntegration(
            auth=Auth.AppAuth(APP_ID, other_pem), base_url=server.url
        )

        with pytest.raises(github.GithubException) as caught:
            try:
                client.get_app()
            finally:
                client.close()

        assert caught.value.status == 401
        assert caught.value.data["message"] == "A JSON web token could not be decoded"

    @pytest.mark.parametrize("header", [None, "Bearer not-a-jwt", "token abc"])
    def test_missing_or_malformed_jwt_is_401(
        self, server: RunningServer, header: str | None
    ) -> None:
        headers = {"Authorization": header} if header else {}

        response = requests.get(f"{server.url}/app", headers=headers, timeout=5)

        assert response.status_code == 401


class TestInstallationTokens:
    def test_expired_token_is_401(
        self, sandbox: GitHubSandbox, gh: github.Github
    ) -> None:
        gh.get_repo(REPO)
        sandbox.expire_tokens()

        with pytest.raises(github.BadCredentialsException) as caught:
            gh.get_repo(REPO)

        assert caught.value.data["message"] == "Bad credentials"

    def test_short_token_lifetime_expires(
        self,
        sandbox: GitHubSandbox,
        server: RunningServer,
        integration: github.GithubIntegration,
    ) -> None:
        sandbox.token_lifetime = 0.2
        token = integration.get_access_token(1).token
        client = token_client(server, token)
        client.get_repo(REPO)
        time.sleep(0.3)

        with pytest.raises(github.BadCredentialsException):
            client.get_repo(REPO)

        client.close()

    def test_unknown_token_is_401(self, server: RunningServer) -> None:
        client = token_client(server, "ghs_" + "x" * 36)

        with pytest.raises(github.BadCredentialsException):
            client.get_repo(REPO)

        client.close()

    def test_repository_outside_installation_is_404(self, gh: github.Github) -> None:
        with pytest.raises(github.UnknownObjectException):
            gh.get_repo("example-org/private-other")

    def test_token_limited_to_requested_repositories(
        self, sandbox: GitHubSandbox, server: RunningServer, app_key_pem: str
    ) -> None:
        response = requests.post(
            f"{server.url}/app/installations/1/access_tokens",
            json={"repositories": ["interactive-queries"]},
            headers={"Authorization": f"Bearer {app_jwt(app_key_pem)}"},
            timeout=5,
        )
        too_much = requests.post(
            f"{server.url}/app/installations/1/access_tokens",
            json={"permissions": {"administration": "write"}},
            headers={"Authorization": f"Bearer {app_jwt(app_key_pem)}"},
            timeout=5,
        )

        assert response.status_code == 201
        assert response.json()["repositories"][0]["full_name"] == REPO
        assert too_much.status_code == 422


class TestGitData:
    def test_commit_tag_flow_is_stored_in_git(
        self, sandbox: GitHubSandbox, gh: github.Github
    ) -> None:
        repo = gh.get_repo(REPO)
        ref = repo.get_git_ref("heads/main")
        head = ref.object.sha
        message = "Add query 01HV\n\nQuery-Id: 01HV\nRequested-By: Jane Doe <j@x>"

        commit = commit_files(
            repo,
            {"project.yaml": "version: 4\n", "analysis/measures.py": "x = 1\n"},
            message,
            head,
        )
        ref.edit(commit.sha, force=False)
        tagger = InputGitAuthor("Query Bot", "bot@example.org", "2024-05-01T09:32:00Z")
        tag = repo.create_git_tag("01HV", "Query 01HV\n", commit.sha, "commit", tagger)
        tag_ref = repo.create_git_ref("refs/tags/01HV", tag.sha)

        git = sandbox.repository(REPO)
        stored = git.read_commit(commit.sha)
        files = {
            entry.path: git.read_blob(entry.sha)
            for entry in git.read_tree_recursive(stored.tree)
        }
        assert git.read_ref("refs/heads/main") == commit.sha
        assert stored.parents == [head]
        assert stored.message == message
        assert (stored.author.name, stored.author.email) == (
            "Jane Doe",
            "jane@example.org",
        )
        assert stored.author.date.isoformat() == "2024-05-01T09:30:00+00:00"
        assert (stored.committer.name, stored.committer.email) == (
            "Query Bot",
            "bot@example.org",
        )
        assert files == {
            "analysis/measures.py": b"x = 1\n",
            "project.yaml": b"version: 4\n",
        }
        assert tag_ref.object.type == "tag"
        assert git.read_ref("refs/tags/01HV") == tag.sha
        assert git.object_type(tag.sha) == "tag"
        assert git.peel(tag.sha) == commit.sha
        assert git.read_tag(tag.sha).message == "Query 01HV\n"
        assert commit.author.date.isoformat() == "2024-05-01T09:30:00+00:00"
        assert commit.html_url.endswith(f"/{REPO}/commit/{commit.sha}")

    def test_read_back_tag_commit_and_ref(
        self, sandbox: GitHubSandbox, gh: github.Github
    ) -> None:
        repo = gh.get_repo(REPO)
        head = repo.get_git_ref("heads/main").object.sha
        tag = repo.create_git_tag("v1", "msg", head, "commit")
        repo.create_git_ref("refs/tags/v1", tag.sha)

        read_tag = repo.get_git_tag(tag.sha)
        read_commit = repo.get_git_commit(head)
        read_ref = repo.get_git_ref("tags/v1")

        assert read_tag.object.sha == head
        assert read_tag.object.type == "commit"
        assert read_tag.tagger.name == "sandbox-app[bot]"
        assert read_commit.message == "Initial commit"
        assert read_ref.object.sha == tag.sha
        assert read_ref.object.type == "tag"

    def test_tree_and_matching_refs(self, gh: github.Github) -> None:
        repo = gh.get_repo(REPO)
        head = repo.get_git_ref("heads/main").object.sha
        repo.create_git_ref("refs/tags/q-1", head)
        repo.create_git_ref("refs/tags/q-2", head)
        tree = repo.create_git_tree(
            [InputGitTreeElement("a/b/c.txt", "100644", "blob", content="c")]
        )

        recursive = repo.get_git_tree(tree.sha, recursive=True)
        matching = repo.get_git_matching_refs("tags/q-")

        assert [element.path for element in recursive.tree] == ["a", "a/b", "a/b/c.txt"]
        assert [ref.ref for ref in matching] == ["refs/tags/q-1", "refs/tags/q-2"]

    def test_missing_objects_are_404(self, gh: github.Github) -> None:
        repo = gh.get_repo(REPO)

        with pytest.raises(github.UnknownObjectException):
            repo.get_git_ref("heads/missing").object  # noqa: B018

        with pytest.raises(github.UnknownObjectException):
            repo.get_git_commit("1" * 40)

        with pytest.raises(github.UnknownObjectException):
            repo.get_git_tag("1" * 40)

    def test_tree_with_base_tree_and_deletion(
        self, sandbox: GitHubSandbox, gh: github.Github
    ) -> None:
        repo = gh.get_repo(REPO)
        first = repo.create_git_tree(
            [
                InputGitTreeElement("keep.txt", "100644", "blob", content="k"),
                InputGitTreeElement("dir/gone.txt", "100644", "blob", content="g"),
            ]
        )

        second = repo.create_git_tree(
            [
                InputGitTreeElement("dir/gone.txt", "100644", "blob", sha=None),
                InputGitTreeElement("new/file.py", "100755", "blob", content="n"),
            ],
            base_tree=first,
        )

        paths = {
            entry.path: entry.mode
            for entry in sandbox.repository(REPO).read_tree_recursive(second.sha)
        }
        assert paths == {"keep.txt": "100644", "new/file.py": "100755"}
        assert sorted(element.path for element in second.tree) == ["keep.txt", "new"]

    @pytest.mark.parametrize(
        "entry",
        [
            {"path": "../escape", "mode": "100644", "type": "blob", "content": "x"},
            {"path": "a", "mode": "100600", "type": "blob", "content": "x"},
            {"path": "a", "mode": "100644", "type": "tree", "content": "x"},
            {"path": "a", "mode": "100644", "type": "blob"},
            {"path": "a", "mode": "100644", "type": "blob", "sha": "1" * 40},
        ],
    )
    def test_invalid_tree_entry_is_422(
        self, gh: github.Github, entry: dict[str, Any]
    ) -> None:
        requester = gh.requester

        with pytest.raises(github.GithubException) as caught:
            requester.requestJsonAndCheck(
                "POST", f"/repos/{REPO}/git/trees", input={"tree": [entry]}
            )

        assert caught.value.status == 422

    def test_commit_with_missing_parent_is_422(self, gh: github.Github) -> None:
        repo = gh.get_repo(REPO)
        tree = repo.create_git_tree([])

        with pytest.raises(github.GithubException) as caught:
            gh.requester.requestJsonAndCheck(
                "POST",
                f"/repos/{REPO}/git/commits",
                input={"message": "m", "tree": tree.sha, "parents": ["1" * 40]},
            )

        assert caught.value.status == 422
        assert "Parent SHA" in caught.value.data["message"]


class TestRefUpdates:
    def test_non_fast_forward_is_422(
        self, sandbox: GitHubSandbox, gh: github.Github
    ) -> None:
        repo = gh.get_repo(REPO)
        ref = repo.get_git_ref("heads/main")
        root = ref.object.sha
        first = commit_files(repo, {"a": "1"}, "first", root)
        sibling = commit_files(repo, {"a": "2"}, "sibling", root)
        ref.edit(first.sha)

        with pytest.raises(github.GithubException) as caught:
            ref.edit(sibling.sha, force=False)

        assert caught.value.status == 422
        assert caught.value.data["message"] == "Update is not a fast forward"
        assert sandbox.repository(REPO).read_ref("refs/heads/main") == first.sha

    def test_force_update_is_rejected_and_recorded(
        self, sandbox: GitHubSandbox, gh: github.Github
    ) -> None:
        repo = gh.get_repo(REPO)
        ref = repo.get_git_ref("heads/main")
        root = ref.object.sha
        child = commit_files(repo, {"a": "1"}, "child", root)

        with pytest.raises(github.GithubException) as caught:
            ref.edit(child.sha, force=True)

        assert caught.value.status == 422
        assert len(sandbox.forced_updates) == 1
        assert sandbox.forced_updates[0].ref == "refs/heads/main"
        assert sandbox.forced_updates[0].sha == child.sha
        assert sandbox.repository(REPO).read_ref("refs/heads/main") == root

    def test_existing_ref_is_422(self, gh: github.Github) -> None:
        repo = gh.get_repo(REPO)
        head = repo.get_git_ref("heads/main").object.sha
        repo.create_git_ref("refs/tags/q1", head)

        with pytest.raises(github.GithubException) as caught:
            repo.create_git_ref("refs/tags/q1", head)

        assert caught.value.status == 422
        assert caught.value.data["message"] == "Reference already exists"

    def test_concurrent_fast_forwards_one_wins(
        self, sandbox: GitHubSandbox, gh: github.Github, server: RunningServer
    ) -> None:
        repo = gh.get_repo(REPO)
        root = repo.get_git_ref("heads/main").object.sha
        candidates = [
            commit_files(repo, {"a": str(n)}, f"writer {n}", root).sha for n in range(4)
        ]
        token = sandbox.create_installation_token()
        statuses: dict[str, int] = {}
        barrier = threading.Barrier(len(candidates))

        def update(sha: str) -> None:
            barrier.wait()
            response = requests.patch(
                f"{server.url}/repos/{REPO}/git/refs/heads/main",
                json={"sha": sha, "force": False},
                headers={"Authorization": f"token {token}"},
                timeout=10,
            )
            statuses[sha] = response.status_code

        threads = [threading.Thread(target=update, args=(sha,)) for sha in candidates]
        for thread in threads:
            thread.start()

        for thread in threads:
            thread.join()

        winners = [sha for sha, status in statuses.items() if status == 200]
        assert len(winners) == 1
        assert sorted(statuses.values()) == [200, 422, 422, 422]
        assert sandbox.repository(REPO).read_ref("refs/heads/main") == winners[0]

    @pytest.mark.parametrize(
        ("base", "head", "status", "ahead", "behind"),
        [
            ("root", "main", "ahead", 2, 0),
            ("main", "root", "behind", 0, 2),
            ("main", "main", "identical", 0, 0),
            ("side", "main", "diverged", 2, 1),
        ],
    )
    def test_compare_status(
        self,
        gh: github.Github,
        base: str,
        head: str,
        status: str,
        ahead: int,
        behind: int,
    ) -> None:
        repo = gh.get_repo(REPO)
        ref = repo.get_git_ref("heads/main")
        root = ref.object.sha
        first = commit_files(repo, {"a": "1"}, "first", root)
        second = commit_files(repo, {"a": "2"}, "second", first.sha)
        side = commit_files(repo, {"b": "1"}, "side", root)
        ref.edit(second.sha)
        names = {"root": root, "side": side.sha, "main": "main"}

        comparison = repo.compare(names[base], names[head])

        assert comparison.status == status
        assert comparison.ahead_by == ahead
        assert comparison.behind_by == behind
        assert comparison.total_commits == ahead
        expected_base = second.sha if status == "identical" else root
        assert comparison.merge_base_commit.sha == expected_base
        if status == "ahead":
            assert [commit.sha for commit in comparison.commits] == [
                first.sha,
                second.sha,
            ]

    def test_compare_with_tag_name(self, gh: github.Github) -> None:
        repo = gh.get_repo(REPO)
        head = repo.get_git_ref("heads/main").object.sha
        tag = repo.create_git_tag("q2", "m", head, "commit")
        repo.create_git_ref("refs/tags/q2", tag.sha)

        comparison = repo.compare("q2", "main")

        assert comparison.status == "identical"
        assert comparison.base_commit.sha == head


class TestWebhooks:
    def test_branch_push_sends_signed_push(
        self,
        sandbox: GitHubSandbox,
        gh: github.Github,
        receiver: tuple[Receiver, RunningServer],
    ) -> None:
        repo = gh.get_repo(REPO)
        ref = repo.get_git_ref("heads/main")
        root = ref.object.sha
        commit = commit_files(repo, {"project.yaml": "v"}, "Add query", root)

        ref.edit(commit.sha)
        sandbox.wait_for_deliveries(timeout=10)

        app, _ = receiver
        headers, body = app.received[0]
        payload = json.loads(body)
        assert app.events() == ["push"]
        assert check_signature(headers, body)
        assert headers["X-Github-Hook-Installation-Target-Type"] == "integration"
        assert headers["X-Github-Hook-Installation-Target-Id"] == APP_ID
        assert headers["User-Agent"] == "GitHub-Hookshot/sandbox"
        assert headers["Content-Type"] == "application/json"
        assert payload["ref"] == "refs/heads/main"
        assert payload["before"] == root
        assert payload["after"] == commit.sha
        assert payload["created"] is False
        assert payload["forced"] is False
        assert payload["base_ref"] is None
        assert [entry["id"] for entry in payload["commits"]] == [commit.sha]
        assert payload["commits"][0]["added"] == ["project.yaml"]
        assert payload["commits"][0]["removed"] == ["README.md"]
        assert payload["head_commit"]["id"] == commit.sha
        assert payload["installation"]["id"] == 1
        assert payload["repository"]["full_name"] == REPO
        assert payload["sender"]["type"] == "Bot"

    def test_tag_ref_sends_push_and_create(
        self,
        sandbox: GitHubSandbox,
        gh: github.Github,
        receiver: tuple[Receiver, RunningServer],
    ) -> None:
        repo = gh.get_repo(REPO)
        head = repo.get_git_ref("heads/main").object.sha
        tag = repo.create_git_tag("01HV", "Query 01HV", head, "commit")

        repo.create_git_ref("refs/tags/01HV", tag.sha)
        sandbox.wait_for_deliveries(timeout=10)

        app, _ = receiver
        push = app.payloads("push")[0]
        create = app.payloads("create")[0]
        guids = {headers["X-Github-Delivery"] for headers, _ in app.received}
        assert sorted(app.events()) == ["create", "push"]
        assert len(guids) == 2
        assert all(check_signature(headers, body) for headers, body in app.received)
        assert push["ref"] == "refs/tags/01HV"
        assert push["before"] == ZERO_SHA
        assert push["after"] == tag.sha
        assert push["created"] is True
        assert push["commits"] == []
        assert push["head_commit"]["id"] == head
        assert push["base_ref"] == "refs/heads/main"
        assert create["ref"] == "01HV"
        assert create["ref_type"] == "tag"
        assert create["master_branch"] == "main"
        assert create["pusher_type"] == "user"
        assert create["installation"]["id"] == 1

    def test_deliveries_do_not_delay_api_and_run_concurrently(
        self,
        sandbox: GitHubSandbox,
        gh: github.Github,
        receiver: tuple[Receiver, RunningServer],
    ) -> None:
        app, _ = receiver
        # Both tag deliveries must be in the receiver at once to pass the
        # barrier, and neither finishes before the test releases them.
        app.barrier = threading.Barrier(2)
        app.release = threading.Event()
        repo = gh.get_repo(REPO)
        head = repo.get_git_ref("heads/main").object.sha

        repo.create_git_ref("refs/tags/slow", head)
        received_before_release = len(app.received)
        app.release.set()
        sandbox.wait_for_deliveries(timeout=10)

        assert received_before_release == 0
        assert len(app.received) == 2
        assert [delivery.status_code for delivery in sandbox.deliveries] == [200, 200]

    def test_delivery_log_lists_and_pages(
        self,
        sandbox: GitHubSandbox,
        gh: github.Github,
        server: RunningServer,
        app_key_pem: str,
    ) -> None:
        repo = gh.get_repo(REPO)
        head = repo.get_git_ref("heads/main").object.sha
        repo.create_git_ref("refs/tags/a", head)
        repo.create_git_ref("refs/tags/b", head)
        sandbox.wait_for_deliveries(timeout=10)
        headers = {"Authorization": f"Bearer {app_jwt(app_key_pem)}"}

        first = requests.get(
            f"{server.url}/app/hook/deliveries",
            params={"per_page": 3},
            headers=headers,
            timeout=5,
        )
        second = requests.get(first.links["next"]["url"], headers=headers, timeout=5)
        detail = requests.get(
            f"{server.url}/app/hook/deliveries/{first.json()[0]['id']}",
            headers=headers,
            timeout=5,
        )

        ids = [item["id"] for item in first.json() + second.json()]
        assert ids == [4, 3, 2, 1]
        assert "next" not in second.links
        assert first.json()[0]["status"] == "OK"
        assert first.json()[0]["status_code"] == 200
        assert first.json()[0]["repository_id"] == 1001
        body = detail.json()
        assert body["request"]["headers"]["X-GitHub-Delivery"] == body["guid"]
        assert body["request"]["payload"]["installation"]["id"] == 1
        assert body["response"]["payload"] == '{"ok": true}'

    def test_redelivery_keeps_guid(
        self,
        sandbox: GitHubSandbox,
        gh: github.Github,
        server: RunningServer,
        app_key_pem: str,
        receiver: tuple[Receiver, RunningServer],
    ) -> None:
        app, _ = receiver
        app.status = 503
        repo = gh.get_repo(REPO)
        ref = repo.get_git_ref("heads/main")
        commit = commit_files(repo, {"a": "1"}, "first", ref.object.sha)
        ref.edit(commit.sha)
        sandbox.wait_for_deliveries(timeout=10)
        original = sandbox.deliveries[0]
        app.status = 200
        headers = {"Authorization": f"Bearer {app_jwt(app_key_pem)}"}

        response = requests.post(
            f"{server.url}/app/hook/deliveries/{original.id}/attempts",
            headers=headers,
            timeout=5,
        )
        sandbox.wait_for_deliveries(timeout=10)

        retry = sandbox.deliveries[-1]
        failed = requests.get(
            f"{server.url}/app/hook/deliveries",
            params={"status": "failure"},
            headers=headers,
            timeout=5,
        ).json()
        assert response.status_code == 202
        assert original.status == "Invalid HTTP Response: 503"
        assert retry.id != original.id
        assert retry.guid == original.guid
        assert retry.redelivery is True
        assert retry.status_code == 200
        assert retry.body == original.body
        assert [item["id"] for item in failed] == [original.id]
        guids = [headers["X-Github-Delivery"] for headers, _ in app.received]
        assert guids == [original.guid, original.guid]

    def test_redelivery_of_unknown_id_is_404(
        self, server: RunningServer, app_key_pem: str
    ) -> None:
        response = requests.post(
            f"{server.url}/app/hook/deliveries/77/attempts",
            headers={"Authorization": f"Bearer {app_jwt(app_key_pem)}"},
            timeout=5,
        )

        assert response.status_code == 404

    def test_send_delivery_with_other_secret(
        self, sandbox: GitHubSandbox, receiver: tuple[Receiver, RunningServer]
    ) -> None:
        delivery = sandbox.send_delivery("ping", {"zen": "hi"}, secret="wrong")

        app, _ = receiver
        headers, body = app.received[0]
        assert delivery.status_code == 200
        assert headers["X-Github-Event"] == "ping"
        assert not check_signature(headers, body)

    def test_user_push_helper_sends_push(
        self, sandbox: GitHubSandbox, receiver: tuple[Receiver, RunningServer]
    ) -> None:
        sha = sandbox.push_commit(REPO, {"other.txt": b"o"}, "Someone else's commit")
        sandbox.wait_for_deliveries(timeout=10)

        app, _ = receiver
        push = app.payloads("push")[0]
        assert sandbox.repository(REPO).read_ref("refs/heads/main") == sha
        assert push["after"] == sha
        assert push["sender"]["login"] == "sandbox-user"


def test_cli_key_is_created_once(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"

    first = load_or_create_key(path)
    second = load_or_create_key(path)

    assert first == second
    assert first.startswith(b"-----BEGIN PUBLIC KEY-----")
    assert path.stat().st_mode & 0o777 == 0o600


class TestFaults:
    def test_fail_nth_call_of_endpoint(
        self, sandbox: GitHubSandbox, gh: github.Github
    ) -> None:
        repo = gh.get_repo(REPO)
        sandbox.fail_call(
            GET_REF, 502, nth=2, headers={"Retry-After": "1"}, body={"message": "down"}
        )
        repo.get_git_ref("heads/main").object  # noqa: B018

        with pytest.raises(github.GithubException) as caught:
            repo.get_git_ref("heads/main").object  # noqa: B018

        repo.get_git_ref("heads/main").object  # noqa: B018
        statuses = [call.status for call in sandbox.calls if call.endpoint == GET_REF]
        assert caught.value.status == 502
        assert caught.value.data == {"message": "down"}
        assert caught.value.headers["retry-after"] == "1"
        assert statuses == [200, 502, 200]

    def test_fail_after_handling_applies_change(
        self, sandbox: GitHubSandbox, gh: github.Github
    ) -> None:
        repo = gh.get_repo(REPO)
        ref = repo.get_git_ref("heads/main")
        commit = commit_files(repo, {"a": "1"}, "first", ref.object.sha)
        sandbox.fail_call(PATCH_REF, 504, after_handling=True)

        with pytest.raises(github.GithubException) as caught:
            ref.edit(commit.sha)

        assert caught.value.status == 504
        assert sandbox.repository(REPO).read_ref("refs/heads/main") == commit.sha

    def test_hook_races_a_commit_before_ref_update(
        self, sandbox: GitHubSandbox, gh: github.Github
    ) -> None:
        repo = gh.get_repo(REPO)
        ref = repo.get_git_ref("heads/main")
        commit = commit_files(repo, {"a": "1"}, "mine", ref.object.sha)
        seen: list[dict[str, str]] = []

        def race(endpoint: str, params: dict[str, str]) -> None:
            seen.append(params)
            sandbox.push_commit(REPO, {"b": b"2"}, "theirs")

        sandbox.add_hook(race, endpoint=PATCH_REF, once=True)

        with pytest.raises(github.GithubException) as caught:
            ref.edit(commit.sha)

        assert caught.value.status == 422
        assert seen == [
            {"owner": "example-org", "repo": "interactive-queries", "ref": "heads/main"}
        ]

    def test_latency_and_call_counts(
        self, sandbox: GitHubSandbox, gh: github.Github
    ) -> None:
        repo = gh.get_repo(REPO)
        sandbox.set_latency(0.2, endpoint=GET_REF)

        started = time.monotonic()
        repo.get_git_ref("heads/main").object  # noqa: B018
        elapsed = time.monotonic() - started

        assert elapsed >= 0.2
        assert sandbox.call_counts()[GET_REF] == 1
        assert sandbox.call_counts()["GET /repos/{owner}/{repo}"] == 1

    def test_handler_error_is_json_500(
        self,
        sandbox: GitHubSandbox,
        gh: github.Github,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        def broken(full_name: str) -> None:
            raise RuntimeError("git is gone")

        repo = gh.get_repo(REPO)
        monkeypatch.setattr(sandbox, "repository", broken)

        with pytest.raises(github.GithubException) as caught:
            repo.get_git_ref("heads/main").object  # noqa: B018

        assert caught.value.status == 500
        assert caught.value.data["message"] == "Server Error"
        assert sandbox.calls[-1].status == 500
        assert "git is gone" in caplog.text

    def test_unknown_endpoint_name_is_rejected(self, sandbox: GitHubSandbox) -> None:
        with pytest.raises(ValueError, match="Unknown endpoint"):
            sandbox.fail_call("GET /nope", 500)
