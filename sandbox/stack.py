"""The stand-ins plus the app under gunicorn, for the demo, benchmarks and tests.

``running_stack`` starts the GitHub and Job Server stand-ins in this process and
the app as a separate gunicorn process pointed at them, all on 127.0.0.1, and
stops everything on exit. It never imports the app: the app is configured only
through its environment variables, as in production.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from sandbox.__main__ import load_or_create_key
from sandbox.github import GitHubSandbox
from sandbox.jobserver import JobServerSandbox
from sandbox.opencodelists import OpenCodelistsSandbox
from sandbox.servers import serve

REPO = "example-org/interactive-queries"
BRANCH = "main"
APP_ID = "1"
#: The production gunicorn settings, which the stack runs the app with.
GUNICORN_CONFIG = Path(__file__).resolve().parent.parent / "gunicorn.conf.py"
#: Seconds to wait for gunicorn to respond to /healthz.
START_TIMEOUT = 30


@dataclass
class RunningStack:
    """Handles on a running stack."""

    github: GitHubSandbox
    job_server: JobServerSandbox
    opencodelists: OpenCodelistsSandbox
    app_url: str
    api_token: str
    log_path: Path

    def post_query(self, body: dict[str, Any], timeout: float = 60) -> requests.Response:
        return requests.post(
            f"{self.app_url}/api/v1/queries",
            json=body,
            headers={"Authorization": f"Bearer {self.api_token}"},
            timeout=timeout,
        )

    def wait_for_job_requests(self, count: int, timeout: float = 60) -> bool:
        """Wait until Job Server has ``count`` job requests; return whether it has."""
        deadline = time.monotonic() + timeout
        while len(self.job_server.job_requests) < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"The app stopped during start-up; its log:\n{log.read_text()}"
            )
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        time.sleep(0.1)

    raise RuntimeError(
        f"The app did not respond to /healthz within {START_TIMEOUT} s."
    )


@contextlib.contextmanager
def running_stack(
    workdir: Path,
    *,
    workers: int = 2,
    threads: int = 8,
    extra_environment: dict[str, str] | None = None,
) -> Iterator[RunningStack]:
    """Start the stand-ins and the app under gunicorn; stop them on exit.

    ``workdir`` contains the App key, the bare repositories, the database and the
    app's log; it must be empty or absent.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    key_path = workdir / "app-key.pem"
    public_key = load_or_create_key(key_path)
    webhook_secret = secrets.token_hex(16)
    api_token = secrets.token_hex(16)
    job_server_token = secrets.token_hex(16)
    github = GitHubSandbox(
        root=workdir / "github",
        app_id=APP_ID,
        public_key_pem=public_key,
        repositories=[REPO],
        webhook_secret=webhook_secret,
        branch=BRANCH,
    )
    job_server = JobServerSandbox(token=job_server_token)
    opencodelists = OpenCodelistsSandbox()
    with serve(github.wsgi_app) as github_server, serve(
        job_server.wsgi_app
    ) as job_server_server, serve(opencodelists.wsgi_app) as opencodelists_server:
        app_url = f"http://127.0.0.1:{free_port()}"
        github.webhook_url = f"{app_url}/api/github/webhooks"
        environment = {
            **os.environ,
            "GITHUB_APP_ID": APP_ID,
            "GITHUB_APP_PRIVATE_KEY_PATH": str(key_path.resolve()),
            "GITHUB_WEBHOOK_SECRET": webhook_secret,
            "GITHUB_API_URL": github_server.url,
            "QUERY_REPOSITORIES": REPO,
            "QUERY_BRANCH": BRANCH,
            "JOB_SERVER_URL": job_server_server.url,
            "JOB_SERVER_TOKEN": job_server_token,
            "OPENCODELISTS_URL": opencodelists_server.url,
            "API_TOKENS": api_token,
            "DATABASE_URL": f"sqlite:///{(workdir / 'app.sqlite').resolve()}",
            "LOG_FORMAT": "json",
            **(extra_environment or {}),
        }
        log_path = workdir / "app.log"
        migrated = subprocess.run(
            [sys.executable, "-m", "github_app.cli", "db", "upgrade"],
            env=environment,
            capture_output=True,
            text=True,
        )
        if migrated.returncode != 0:
            raise RuntimeError(
                f"github-app db upgrade failed:\n{migrated.stdout}{migrated.stderr}"
            )
        command = [
            sys.executable, "-m", "gunicorn",
            "--config", str(GUNICORN_CONFIG),
            "--workers", str(workers),
            "--threads", str(threads),
            "--bind", app_url.removeprefix("http://"),
            # Several stacks may run at once; they must not share a control socket.
            "--no-control-socket",
            "wsgi:app",
        ]
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                command, env=environment, stdout=log_file, stderr=subprocess.STDOUT
            )
            try:
                _wait_until_up(app_url, process, log_path)
                yield RunningStack(
                    github, job_server, opencodelists, app_url, api_token, log_path
                )
                with contextlib.suppress(TimeoutError):
                    github.wait_for_deliveries(timeout=30)
            finally:
                process.terminate()
                process.wait(timeout=30)
