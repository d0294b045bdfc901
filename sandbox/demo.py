"""Run one query end to end: the stand-ins, the app under gunicorn, and checks.

``python -m sandbox.demo`` (``make demo``) starts the GitHub and Job Server
stand-ins on 127.0.0.1, starts the app with gunicorn pointed at them, posts a
sample query, waits for Job Server's job request, and prints the commit, the tag,
the webhook deliveries and the job request. It exits 0 only when the job request's
SHA is the tag's commit and that commit is on the branch. Its files live in
``.demo/``, which each run recreates.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from sandbox.__main__ import load_or_create_key
from sandbox.github import GitHubSandbox
from sandbox.jobserver import JobServerSandbox
from sandbox.servers import serve

REPO = "example-org/interactive-queries"
BRANCH = "main"
APP_ID = "1"
WORKERS = 2
QUERY: dict[str, Any] = {
    "id": "01HV3Z8Q4J6Y9K2M5N7P0R1S2T",
    "repo": REPO,
    "workspace": "interactive-queries",
    "backend": "tpp",
    "requested_by": {"username": "jdoe", "name": "Jane Doe", "email": "jane@example.org"},
    "analysis": {
        "template": "event_counts",
        "inputs": {"codelist_1": "opensafely/asthma-diagnosis/2020-04-15"},
    },
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"The app stopped during start-up; see {log}:\n{log.read_text()}")
        try:
            if requests.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)

    sys.exit(f"The app did not answer /healthz within 30 s; see {log}.")


def heading(text: str) -> None:
    print(f"\n== {text}")


def show_commit(github: GitHubSandbox, sha: str) -> None:
    git = github.repository(REPO)
    commit = git.read_commit(sha)
    heading(f"Commit {sha}")
    print(f"Author:    {commit.author.name} <{commit.author.email}>")
    print(f"Committer: {commit.committer.name} <{commit.committer.email}>")
    print(f"Parent:    {', '.join(commit.parents)}")
    print("Message:")
    for line in commit.message.rstrip().splitlines():
        print(f"    {line}")
    print("Files:")
    for entry in git.read_tree_recursive(commit.tree):
        size = len(git.read_blob(entry.sha))
        print(f"    {entry.path} ({size} bytes)")


def show_tag(github: GitHubSandbox, name: str) -> str | None:
    git = github.repository(REPO)
    target = git.read_ref(f"refs/tags/{name}")
    heading(f"Tag {name}")
    if target is None:
        print("    (missing)")
        return None

    kind = git.object_type(target)
    print(f"refs/tags/{name} -> {kind} {target}")
    if kind == "tag":
        tag = git.read_tag(target)
        tagger = f"{tag.tagger.name} <{tag.tagger.email}>" if tag.tagger else "-"
        print(f"Tag object: {tag.type} {tag.object}, tagger {tagger}")
    return git.peel(target)


def show_deliveries(github: GitHubSandbox) -> None:
    heading("Webhook deliveries (as GitHub's delivery log shows them)")
    for delivery in github.deliveries:
        ref = delivery.payload.get("ref", "")
        try:
            answer = json.loads(delivery.response_body)
            said = f"{answer.get('outcome')}: {answer.get('message')}"
        except ValueError:
            said = delivery.response_body[:100]
        print(f"    {delivery.status_code}  {delivery.event:<6} {ref:<40} {said}")


def show_job_request(job: Any) -> None:
    heading("Job request received by Job Server")
    print(f"id {job.id}, Idempotency-Key {job.idempotency_key}")
    body = dict(job.body)
    project = body.pop("project_definition")
    print(json.dumps(body, indent=4))
    print("project_definition:")
    for line in project.rstrip().splitlines():
        print(f"    {line}")


def check(label: str, passed: bool) -> bool:
    print(f"[{'ok' if passed else 'FAILED'}] {label}")
    return passed


def run(workdir: Path) -> int:
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
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
    with serve(github.wsgi_app) as github_server, serve(
        job_server.wsgi_app
    ) as job_server_server:
        app_url = f"http://127.0.0.1:{free_port()}"
        github.webhook_url = f"{app_url}/api/github/webhooks"
        environment = {
            **os.environ,
            "GITHUB_APP_ID": APP_ID,
            "GITHUB_APP_PRIVATE_KEY_PATH": str(key_path),
            "GITHUB_WEBHOOK_SECRET": webhook_secret,
            "GITHUB_API_URL": github_server.url,
            "QUERY_REPOSITORIES": REPO,
            "QUERY_BRANCH": BRANCH,
            "JOB_SERVER_URL": job_server_server.url,
            "JOB_SERVER_TOKEN": job_server_token,
            "API_TOKENS": api_token,
            "DATABASE_URL": f"sqlite:///{(workdir / 'app.sqlite').resolve()}",
            "LOG_FORMAT": "json",
        }
        log = workdir / "app.log"
        heading("Stand-ins and app")
        print(f"GitHub stand-in:     {github_server.url} (bare repositories in {workdir / 'github'})")
        print(f"Job Server stand-in: {job_server_server.url}")
        print(f"App:                 {app_url} (gunicorn, {WORKERS} workers, log in {log})")
        with log.open("wb") as log_file:
            process = subprocess.Popen(
                [
                    sys.executable, "-m", "gunicorn",
                    "--workers", str(WORKERS),
                    "--bind", app_url.removeprefix("http://"),
                    "--timeout", "30",
                    "wsgi:app",
                ],
                env=environment,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
            try:
                wait_until_up(app_url, process, log)
                return post_and_check(app_url, api_token, github, job_server)
            finally:
                process.terminate()
                process.wait(timeout=30)


def post_and_check(
    app_url: str, api_token: str, github: GitHubSandbox, job_server: JobServerSandbox
) -> int:
    heading("Query")
    response = requests.post(
        f"{app_url}/api/v1/queries",
        json=QUERY,
        headers={"Authorization": f"Bearer {api_token}"},
        timeout=60,
    )
    body = response.json()
    print(f"POST /api/v1/queries -> {response.status_code}")
    print(json.dumps(body, indent=4))
    if response.status_code != 201:
        return 1

    deadline = time.monotonic() + 30
    while not job_server.job_requests_for(QUERY["id"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    github.wait_for_deliveries()

    git = github.repository(REPO)
    head = git.read_ref(f"refs/heads/{BRANCH}")
    show_commit(github, body["sha"])
    tagged = show_tag(github, QUERY["id"])
    show_deliveries(github)
    jobs = job_server.job_requests_for(QUERY["id"])
    for job in jobs:
        show_job_request(job)

    heading("Checks")
    results = [
        check("Job Server received exactly one job request", len(jobs) == 1),
        check(
            "the job request's SHA is the tag's commit",
            bool(jobs) and tagged is not None and jobs[0].body["sha"] == tagged,
        ),
        check(
            f"the tag's commit is on {BRANCH}",
            tagged is not None and head is not None and git.is_ancestor(tagged, head),
        ),
        check("no ref was force-updated", not github.forced_updates),
    ]
    return 0 if all(results) else 1


def main() -> int:
    # The stand-ins' request lines would bury the report; the app's own log is kept
    # in .demo/app.log.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    return run(Path(".demo"))


if __name__ == "__main__":
    sys.exit(main())
