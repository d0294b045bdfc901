"""The app, or two app workers on one database, wired to the GitHub and Job Server
stand-ins, with helpers for steering and reading webhook deliveries."""

import datetime
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import requests
from structlog.testing import capture_logs

from github_app.app import create_app
from github_app.config import Settings
from github_app.store import Store
from sandbox.git import ZERO_SHA, Signature, TreeEntry
from sandbox.github import GitHubSandbox
from sandbox.jobserver import JobRequest, JobServerSandbox
from sandbox.servers import RunningServer, serve
from sandbox.webhooks import Delivery
from tests.conftest import API_TOKEN, REPO, WEBHOOK_SECRET
from tests.test_api import QUERY

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
WEBHOOKS_PATH = "/api/github/webhooks"
#: A repository the sandbox hosts but the app is not configured for.
OTHER_REPO = "example-org/other-repo"


def query_body(query_id: str) -> dict[str, Any]:
    """Return the sample query request with another id."""
    return {**QUERY, "id": query_id}


@dataclass
class Stack:
    github: GitHubSandbox
    job_server: JobServerSandbox
    workers: list[RunningServer]
    settings: Settings
    store: Store

    @property
    def app(self) -> RunningServer:
        return self.workers[0]

    def webhook_url(self, worker: int = 0) -> str:
        return f"{self.workers[worker].url}{WEBHOOKS_PATH}"

    def post_query(self, query_id: str) -> dict[str, Any]:
        """Submit a query and return the API's response, which must be 201."""
        response = requests.post(
            f"{self.app.url}/api/v1/queries",
            json=query_body(query_id),
            headers=AUTH,
            timeout=30,
        )
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    def post_query_quietly(self, query_id: str) -> dict[str, Any]:
        """Submit a query while GitHub sends no webhooks for it."""
        url, self.github.webhook_url = self.github.webhook_url, None
        try:
            return self.post_query(query_id)
        finally:
            self.github.webhook_url = url

    def get_query(self, query_id: str) -> dict[str, Any]:
        response = requests.get(
            f"{self.app.url}/api/v1/queries/{query_id}", headers=AUTH, timeout=10
        )
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def jobs(self, query_id: str) -> list[JobRequest]:
        return self.job_server.job_requests_for(query_id)

    def settle(self) -> list[Delivery]:
        """Wait for every delivery in flight and return all deliveries."""
        self.github.wait_for_deliveries(timeout=30)
        return self.github.deliveries

    def tag_deliveries(self, query_id: str) -> list[Delivery]:
        """Return the finished ``push`` and ``create`` deliveries of a query's tag."""
        return [
            delivery
            for delivery in self.github.deliveries
            if delivery.payload.get("ref") in (query_id, f"refs/tags/{query_id}")
        ]

    def announce_tag(self, query_id: str) -> None:
        """Send the webhooks of the query's tag as if the tag had just been pushed."""
        git = self.github.repository(REPO)
        sha = git.read_ref(f"refs/tags/{query_id}")
        assert sha is not None
        hosted = self.github.find_repository(REPO)
        assert hosted is not None
        self.github.announce_ref_change(hosted, f"refs/tags/{query_id}", ZERO_SHA, sha)

    def commit_as_user(self, message: str, parents: list[str]) -> str:
        """Write a commit with ``parents`` (no ref moves) and return its id."""
        git = self.github.repository(REPO)
        blob = git.write_blob(message.encode())
        tree = git.write_tree([TreeEntry("NOTES.md", blob)])
        now = datetime.datetime.now(datetime.UTC)
        author = Signature("Sandbox User", "user@example.com", now)
        return git.commit_tree(tree, parents, message, author, author)

    def wait_for_claims_released(self, timeout: float = 30.0) -> None:
        """Wait until no delivery is being handled, even after its response."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.store.engine.connect() as connection:
                count = connection.exec_driver_sql(
                    "SELECT COUNT(*) FROM delivery_claims"
                ).scalar()
            if count == 0:
                return
            time.sleep(0.05)

        raise AssertionError(f"Deliveries were still being handled after {timeout} s.")


@contextmanager
def running_stack(
    settings: Settings,
    public_key_pem: bytes,
    root: Path,
    *,
    workers: int = 1,
    app_config: dict[str, Any] | None = None,
    **changes: Any,
) -> Iterator[Stack]:
    """Run the stand-ins and ``workers`` app instances sharing one database."""
    github = GitHubSandbox(
        root=root / "github",
        app_id=settings.github_app_id,
        public_key_pem=public_key_pem,
        repositories=[REPO, OTHER_REPO],
        webhook_secret=WEBHOOK_SECRET,
    )
    job_server = JobServerSandbox(token=settings.job_server_token)
    with ExitStack() as servers:
        github_server = servers.enter_context(serve(github.wsgi_app))
        job_server_server = servers.enter_context(serve(job_server.wsgi_app))
        app_settings = replace(
            settings,
            github_api_url=github_server.url,
            job_server_url=job_server_server.url,
            **changes,
        )
        apps = [create_app(app_settings, app_config) for _ in range(workers)]
        running = [servers.enter_context(serve(app)) for app in apps]
        github.webhook_url = f"{running[0].url}{WEBHOOKS_PATH}"
        stack = Stack(
            github, job_server, running, app_settings, apps[0].config["STORE"]
        )
        yield stack
        github.webhooks.release()
        stack.settle()
        stack.wait_for_claims_released()


@contextmanager
def captured_warnings() -> Iterator[list[dict[str, Any]]]:
    """Capture structlog events at warning level and above, from every thread."""
    with capture_logs() as events:
        warnings: list[dict[str, Any]] = []
        yield warnings
        warnings.extend(
            event for event in events if event["log_level"] in ("warning", "error")
        )


def find_event(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [event for event in events if event["event"] == name]


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"Condition not met within {timeout} s.")
        time.sleep(0.05)
