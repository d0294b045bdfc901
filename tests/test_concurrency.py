"""Many queries at once through gunicorn workers, checked in the git repository."""

import copy
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sandbox.stack import REPO, running_stack
from tests.test_api import QUERY

QUERIES = 50


def test_concurrent_queries_land_once_each(tmp_path: Path) -> None:
    ids = [f"q{index:03d}-{tmp_path.name[-6:]}" for index in range(QUERIES)]
    bodies = []
    for query_id in ids:
        body = copy.deepcopy(QUERY)
        body["id"] = query_id
        bodies.append(body)

    with running_stack(tmp_path / "stack", workers=2, threads=8) as stack:
        with ThreadPoolExecutor(max_workers=QUERIES) as pool:
            statuses = [r.status_code for r in pool.map(stack.post_query, bodies)]
        all_jobs = stack.wait_for_job_requests(QUERIES, timeout=90)
        stack.github.wait_for_deliveries(timeout=60)

        git = stack.github.repository(REPO)
        history = git.first_parent_log("refs/heads/main")
        commits = {sha: git.read_commit(sha) for sha in history}
        tags = git.list_refs("refs/tags/")
        jobs = list(stack.job_server.job_requests)
        forced = list(stack.github.forced_updates)

    assert statuses == [201] * QUERIES
    assert all_jobs, f"Job Server received {len(jobs)} of {QUERIES} job requests"
    # The initial commit plus one commit per query, each with exactly one parent.
    assert len(history) == QUERIES + 1
    assert all(len(commit.parents) == 1 for commit in list(commits.values())[:-1])
    trailers = {}
    for sha, commit in commits.items():
        for line in commit.message.splitlines():
            if line.startswith("Query-Id: "):
                trailers[line.removeprefix("Query-Id: ")] = sha
    assert sorted(trailers) == sorted(ids)
    assert sorted(tags) == sorted(f"refs/tags/{query_id}" for query_id in ids)
    for query_id in ids:
        target = tags[f"refs/tags/{query_id}"]
        sha = trailers[query_id]
        tree = {entry.path: entry for entry in git.read_tree_recursive(commits[sha].tree)}
        config = git.read_blob(tree["config.json"].sha).decode()
        assert git.object_type(target) == "tag"
        assert git.peel(target) == sha
        assert f'"query_id": "{query_id}"' in config
    assert forced == []
    assert len(jobs) == QUERIES
    assert len({job.id for job in jobs}) == QUERIES
    assert sorted(job.body["analysis_request"] for job in jobs) == sorted(ids)
    for job in jobs:
        assert job.body["sha"] == trailers[job.body["analysis_request"]]
