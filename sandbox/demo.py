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
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from sandbox.github import GitHubSandbox
from sandbox.stack import BRANCH, REPO, RunningStack, running_stack

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
    with running_stack(workdir, workers=WORKERS) as stack:
        heading("Stand-ins and app")
        print(f"GitHub stand-in: bare repositories in {workdir / 'github'}")
        print(
            f"App: {stack.app_url} (gunicorn, {WORKERS} workers, "
            f"log in {stack.log_path})"
        )
        return post_and_check(stack)


def post_and_check(stack: RunningStack) -> int:
    github, job_server = stack.github, stack.job_server
    heading("Query")
    response = stack.post_query(QUERY)
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
