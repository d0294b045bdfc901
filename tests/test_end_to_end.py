"""One query through the app and the sandbox, checked in the git repository itself."""

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import requests

from github_app.app import create_app
from github_app.config import Settings
from sandbox.github import GitHubSandbox
from sandbox.jobserver import JobServerSandbox
from sandbox.servers import RunningServer, serve
from tests.conftest import API_TOKEN, REPO, WEBHOOK_SECRET
from tests.test_api import QUERY

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@dataclass
class Stack:
    github: GitHubSandbox
    job_server: JobServerSandbox
    app: RunningServer
    #: The running app's settings, for building more app instances on the same
    #: database and stand-ins.
    settings: Settings

    def post_query(self, body: dict[str, Any]) -> requests.Response:
        return requests.post(
            f"{self.app.url}/api/v1/queries", json=body, headers=AUTH, timeout=30
        )

    def get_query(self, query_id: str) -> dict[str, Any]:
        response = requests.get(
            f"{self.app.url}/api/v1/queries/{query_id}", headers=AUTH, timeout=10
        )
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def wait_for_job_requests(self, query_id: str, count: int = 1) -> list[Any]:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            found = self.job_server.job_requests_for(query_id)
            if len(found) >= count:
                self.github.wait_for_deliveries()
                return found
            time.sleep(0.05)

        raise AssertionError(f"Job Server received no job request for {query_id}")


@pytest.fixture
def app_settings_changes(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings to change for the stack's app, set with indirect parametrize."""
    changes: dict[str, Any] = getattr(request, "param", {})
    return changes


@pytest.fixture
def stack(
    settings: Settings,
    public_key_pem: bytes,
    tmp_path: Path,
    app_settings_changes: dict[str, Any],
) -> Iterator[Stack]:
    github = GitHubSandbox(
        root=tmp_path / "github",
        app_id=settings.github_app_id,
        public_key_pem=public_key_pem,
        repositories=[REPO],
        webhook_secret=WEBHOOK_SECRET,
    )
    job_server = JobServerSandbox(token=settings.job_server_token)
    with serve(github.wsgi_app) as github_server, serve(
        job_server.wsgi_app
    ) as job_server_server:
        app_settings = replace(
            settings,
            github_api_url=github_server.url,
            job_server_url=job_server_server.url,
            **app_settings_changes,
        )
        with serve(create_app(app_settings)) as app_server:
            github.webhook_url = f"{app_server.url}/api/github/webhooks"
            yield Stack(github, job_server, app_server, app_settings)
            github.wait_for_deliveries()


def test_query_commits_tags_and_requests_job(stack: Stack) -> None:
    response = stack.post_query(QUERY)

    assert response.status_code == 201
    created = response.json()
    jobs = stack.wait_for_job_requests(QUERY["id"])
    git = stack.github.repository(REPO)
    head = git.read_ref("refs/heads/main")
    assert created["sha"] == head
    assert len(jobs) == 1
    assert jobs[0].body["sha"] == head
    assert git.peel(git.read_ref(f"refs/tags/{QUERY['id']}")) == head


def test_commit_author_trailers_and_tree(stack: Stack) -> None:
    stack.post_query(QUERY)
    stack.wait_for_job_requests(QUERY["id"])

    git = stack.github.repository(REPO)
    head = git.read_ref("refs/heads/main")
    commit = git.read_commit(head)
    paths = {entry.path for entry in git.read_tree_recursive(commit.tree)}
    assert commit.author.name == "Jane Doe"
    assert commit.author.email == "jane@example.org"
    assert commit.committer.name == "interactive-query-app[bot]"
    assert f"\n\nQuery-Id: {QUERY['id']}\n" in commit.message
    assert "Requested-By: Jane Doe <jane@example.org>" in commit.message
    assert len(commit.parents) == 1
    assert paths == {
        "project.yaml",
        "analysis/measures.py",
        "analysis/report.py",
        "config.json",
        "codelists/codelists.txt",
        "codelists/codelists.json",
        "codelists/opensafely-asthma-diagnosis.csv",
    }


def test_tag_is_annotated_by_bot(stack: Stack) -> None:
    stack.post_query(QUERY)
    stack.wait_for_job_requests(QUERY["id"])

    git = stack.github.repository(REPO)
    ref_target = git.read_ref(f"refs/tags/{QUERY['id']}")
    assert ref_target is not None
    tag = git.read_tag(ref_target)
    assert git.object_type(ref_target) == "tag"
    assert tag.tag == QUERY["id"]
    assert tag.object == git.read_ref("refs/heads/main")
    assert tag.type == "commit"
    assert tag.tagger is not None
    assert tag.tagger.name == "interactive-query-app[bot]"


def test_job_request_body(stack: Stack) -> None:
    stack.post_query(QUERY)
    job = stack.wait_for_job_requests(QUERY["id"])[0]

    git = stack.github.repository(REPO)
    head = git.read_ref("refs/heads/main")
    tree = git.read_commit(head).tree
    project = {
        entry.path: entry for entry in git.read_tree_recursive(tree)
    }["project.yaml"]
    assert job.idempotency_key == f"{QUERY['id']}/1"
    assert job.body == {
        "analysis_request": QUERY["id"],
        "workspace": "interactive-queries",
        "backend": "tpp",
        "sha": head,
        "requested_actions": ["run_all"],
        "force_run_dependencies": True,
        "created_by": "jdoe",
        "project_definition": git.read_blob(project.sha).decode(),
    }


def test_push_and_create_make_one_job_request(stack: Stack) -> None:
    stack.post_query(QUERY)
    stack.wait_for_job_requests(QUERY["id"])

    stack.github.wait_for_deliveries()
    tag_deliveries = [
        d
        for d in stack.github.deliveries
        if d.payload.get("ref") in (QUERY["id"], f"refs/tags/{QUERY['id']}")
    ]
    statuses = sorted(d.status_code for d in tag_deliveries)
    assert sorted(d.event for d in tag_deliveries) == ["create", "push"]
    assert statuses in ([200, 201], [201, 202])
    assert len(stack.job_server.job_requests_for(QUERY["id"])) == 1


def test_query_shows_job_request(stack: Stack) -> None:
    stack.post_query(QUERY)
    job = stack.wait_for_job_requests(QUERY["id"])[0]

    query = stack.get_query(QUERY["id"])

    assert query["state"] == "job_requested"
    assert [item["id"] for item in query["job_requests"]] == [str(job.id)]
    assert query["job_requests"][0]["trigger"] in ("tag_event", "branch_push")


def test_redelivery_of_tag_event_reruns_query(stack: Stack) -> None:
    stack.post_query(QUERY)
    stack.wait_for_job_requests(QUERY["id"])
    stack.github.wait_for_deliveries()
    succeeded = next(
        d
        for d in stack.github.deliveries
        if d.event in ("push", "create") and d.status_code == 201
    )

    stack.github.redeliver(succeeded.id)
    jobs = stack.wait_for_job_requests(QUERY["id"], count=2)

    assert len(jobs) == 2
    assert jobs[1].body["sha"] == jobs[0].body["sha"]
    assert jobs[1].idempotency_key == f"{QUERY['id']}/2"


def test_resubmit_creates_new_job_request(stack: Stack) -> None:
    stack.post_query(QUERY)
    stack.wait_for_job_requests(QUERY["id"])

    response = requests.post(
        f"{stack.app.url}/api/v1/queries/{QUERY['id']}/resubmit",
        headers=AUTH,
        timeout=10,
    )

    assert response.status_code == 201
    assert len(response.json()["job_requests"]) == 2
    assert len(stack.job_server.job_requests_for(QUERY["id"])) == 2


def read_committed_files(stack: Stack) -> dict[str, bytes]:
    git = stack.github.repository(REPO)
    tree = git.read_commit(git.read_ref("refs/heads/main")).tree
    return {
        entry.path: git.read_blob(entry.sha)
        for entry in git.read_tree_recursive(tree)
    }


def test_committed_codelists_match_opensafely_layout(
    stack: Stack, settings: Settings
) -> None:
    stack.post_query(QUERY)
    stack.wait_for_job_requests(QUERY["id"])

    files = read_committed_files(stack)
    codelist_id = QUERY["analysis"]["inputs"]["codelist_1"]
    manifest = json.loads(files["codelists/codelists.json"])
    entry = manifest["files"]["opensafely-asthma-diagnosis.csv"]
    csv = files["codelists/opensafely-asthma-diagnosis.csv"]
    assert files["codelists/codelists.txt"] == f"{codelist_id}\n".encode()
    assert list(manifest["files"]) == ["opensafely-asthma-diagnosis.csv"]
    assert entry["id"] == codelist_id
    assert entry["url"] == f"{settings.opencodelists_url}/codelist/{codelist_id}/"
    assert entry["downloaded_at"].endswith("+00:00Z")
    assert entry["sha"] == hashlib.sha1(b"\n".join(csv.splitlines())).hexdigest()
    assert csv.startswith(b"CTV3ID,CTV3PreferredTermDesc\r\n")


def test_commit_records_template_version(stack: Stack) -> None:
    stack.post_query(QUERY)
    stack.wait_for_job_requests(QUERY["id"])

    git = stack.github.repository(REPO)
    commit = git.read_commit(git.read_ref("refs/heads/main"))
    config = json.loads(read_committed_files(stack)["config.json"])
    assert "\nTemplate: event_counts@1.0.0\n" in commit.message
    assert config["template"] == "event_counts"
    assert config["template_version"] == "1.0.0"
