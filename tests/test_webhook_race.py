"""The ``push`` and ``create`` deliveries of one tag on two app workers at once."""

from pathlib import Path

from github_app.config import Settings
from tests.webhook_stack import running_stack

#: Queries raced per test run. Each run releases the branch push, the tag push
#: and the tag create at one barrier, so every run is a fresh race.
RUNS = 25


def test_two_workers_make_one_job_request(
    settings: Settings, public_key_pem: bytes, tmp_path: Path
) -> None:
    results = []
    with running_stack(settings, public_key_pem, tmp_path, workers=2) as stack:
        # Push deliveries go to worker 0 and create deliveries to worker 1.
        stack.github.webhooks.event_urls["create"] = stack.webhook_url(1)
        # A slow Job Server keeps the first job request pending while the other
        # deliveries of the tag arrive.
        stack.job_server.set_latency(0.1)
        for run in range(RUNS):
            query_id = f"q-race-{run}"
            stack.github.webhooks.hold()
            query = stack.post_query(query_id)
            released = stack.github.webhooks.release()
            deliveries = stack.settle()[-released:]
            # The branch push may win too: it starts the job of a tagged query.
            created = [
                d
                for d in deliveries
                if d.status_code == 201
                or f"job requests for {query_id}" in d.response_body
            ]
            results.append(
                {
                    "released": released,
                    "jobs": len(stack.jobs(query_id)),
                    "created": len(created),
                    "statuses": {d.status_code for d in deliveries},
                    "workers": {d.url for d in deliveries},
                    "sha": {job.body["sha"] for job in stack.jobs(query_id)}
                    == {query["sha"]},
                }
            )

    assert [result["released"] for result in results] == [3] * RUNS
    assert [result["jobs"] for result in results] == [1] * RUNS
    assert [result["created"] for result in results] == [1] * RUNS
    assert all(result["statuses"] <= {200, 201} for result in results)
    assert all(len(result["workers"]) == 2 for result in results)
    assert all(result["sha"] for result in results)
