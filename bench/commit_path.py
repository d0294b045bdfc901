"""Benchmark the commit path against the sandbox and print a table of figures.

Run with ``make bench``. It starts the stand-ins and the app under gunicorn on
127.0.0.1 (see ``sandbox.stack``) and measures:

1. GitHub API calls per query on the steady path (token and branch head cached),
   by endpoint, with webhooks switched off so only the commit path is counted.
2. p50 and p95 latency of POST -> tagged (the POST's response) and POST -> job
   request created, with 0 ms and 100 ms added to every GitHub call.
3. Concurrent queries through gunicorn with 2 workers: commits landed, queries
   lost, fast-forward retries spent, total time, and that time as a multiple of
   the serial limit: one commit and one ref update (two round trips) per query.

This is a script that prints figures, not a test: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import collections
import logging
import statistics
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sandbox.stack import REPO, RunningStack, running_stack

PATCH_REF = "PATCH /repos/{owner}/{repo}/git/refs/{ref}"
BASE_QUERY: dict[str, Any] = {
    "repo": REPO,
    "workspace": "interactive-queries",
    "backend": "tpp",
    "requested_by": {"username": "bench", "name": "Bench Mark", "email": "b@example.org"},
    "analysis": {
        "template": "event_counts",
        "inputs": {"codelist_1": "opensafely/asthma-diagnosis/2020-04-15"},
    },
}


def new_query() -> dict[str, Any]:
    return {**BASE_QUERY, "id": f"bench-{uuid.uuid4().hex[:12]}"}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def wait_for_job(stack: RunningStack, query_id: str, timeout: float = 30) -> float:
    deadline = time.monotonic() + timeout
    while not stack.job_server.job_requests_for(query_id):
        if time.monotonic() > deadline:
            raise RuntimeError(f"No job request for {query_id} within {timeout} s")
        time.sleep(0.005)
    return time.monotonic()


def calls_per_query(stack: RunningStack, count: int) -> tuple[collections.Counter[str], float]:
    """Post ``count`` queries one by one with webhooks off; count GitHub calls."""
    webhook_url = stack.github.webhook_url
    stack.github.webhook_url = None
    stack.post_query(new_query())  # Warm-up: installation, token, branch head.
    before = stack.github.call_counts()
    started = time.monotonic()
    for _ in range(count):
        response = stack.post_query(new_query())
        response.raise_for_status()
    elapsed = time.monotonic() - started
    after = stack.github.call_counts()
    stack.github.webhook_url = webhook_url
    return after - before, elapsed


def latencies(stack: RunningStack, count: int) -> tuple[list[float], list[float]]:
    tagged, job = [], []
    for _ in range(count):
        body = new_query()
        started = time.monotonic()
        stack.post_query(body).raise_for_status()
        tagged.append(time.monotonic() - started)
        job.append(wait_for_job(stack, body["id"]) - started)
        stack.github.wait_for_deliveries(timeout=30)
    return tagged, job


def concurrent_run(workdir: Path, count: int) -> dict[str, Any]:
    with running_stack(workdir, workers=2, threads=8) as stack:
        stack.post_query(new_query()).raise_for_status()
        stack.wait_for_job_requests(1)
        stack.github.wait_for_deliveries(timeout=30)
        # Two serial queries give the round-trip time of one GitHub call.
        counted, serial_time = calls_per_query(stack, 4)
        round_trip = serial_time / sum(counted.values())
        bodies = [new_query() for _ in range(count)]
        patch_before = [c for c in stack.github.calls if c.endpoint == PATCH_REF]
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=count) as pool:
            responses = list(pool.map(stack.post_query, bodies))
        statuses = [r.status_code for r in responses]
        failures = [r.text[:300] for r in responses if r.status_code != 201]
        elapsed = time.monotonic() - started
        # The warm-up query has a job request; the serial ones ran without webhooks.
        stack.wait_for_job_requests(count + 1, timeout=120)
        stack.github.wait_for_deliveries(timeout=60)
        git = stack.github.repository(REPO)
        trailers = set()
        for sha in git.first_parent_log("refs/heads/main"):
            for line in git.read_commit(sha).message.splitlines():
                if line.startswith("Query-Id: "):
                    trailers.add(line.removeprefix("Query-Id: "))
        tags = git.list_refs("refs/tags/")
        jobs = {job.body["analysis_request"] for job in stack.job_server.job_requests}
        patches = [c for c in stack.github.calls if c.endpoint == PATCH_REF]
        retries = sum(1 for c in patches[len(patch_before):] if c.status == 422)
        ids = [body["id"] for body in bodies]
        lost = [
            i for i in ids
            if i not in trailers or f"refs/tags/{i}" not in tags or i not in jobs
        ]
        return {
            "statuses": collections.Counter(statuses),
            "landed": sum(1 for i in ids if i in trailers),
            "lost": len(lost),
            "retries": retries,
            "elapsed": elapsed,
            "round_trip": round_trip,
            "forced": len(stack.github.forced_updates),
            "failures": failures,
        }


def main() -> None:
    # The stand-ins' request lines would bury the table.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=20, help="queries per latency row")
    parser.add_argument("--concurrent", type=int, default=50, help="concurrent queries")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-") as temporary:
        root = Path(temporary)
        with running_stack(root / "serial", workers=1, threads=8) as stack:
            counts, _ = calls_per_query(stack, args.queries)
            print(f"1. GitHub API calls per query on the steady path ({args.queries} queries)")
            for endpoint, number in sorted(counts.items()):
                print(f"   {number / args.queries:5.2f}  {endpoint}")
            print(f"calls per query: {sum(counts.values()) / args.queries:g}")

            print("\n2. Latency in ms (p50 / p95)")
            print("   GitHub latency   POST->tagged       POST->job request")
            for added in (0.0, 0.1):
                stack.github.set_latency(added)
                number = args.queries if added == 0 else max(5, args.queries // 2)
                tagged, job = latencies(stack, number)
                print(
                    f"   {added * 1000:5.0f} ms       "
                    f"{percentile(tagged, 0.5) * 1000:6.0f} / {percentile(tagged, 0.95) * 1000:6.0f}"
                    f"    {percentile(job, 0.5) * 1000:6.0f} / {percentile(job, 0.95) * 1000:6.0f}"
                    f"   ({number} queries)"
                )
            stack.github.set_latency(0.0)

        result = concurrent_run(root / "concurrent", args.concurrent)
        limit = args.concurrent * 2 * result["round_trip"]
        print(f"\n3. {args.concurrent} concurrent queries, gunicorn 2 workers x 8 threads")
        print(f"   responses:        {dict(result['statuses'])}")
        print(f"   commits landed:   {result['landed']}")
        print(f"   queries lost:     {result['lost']}")
        print(f"   retries spent:    {result['retries']} (fast-forward races lost)")
        print(f"   forced updates:   {result['forced']}")
        print(f"   total time:       {result['elapsed']:.2f} s")
        print(
            f"   serial limit:     {limit:.2f} s (2 round trips of "
            f"{result['round_trip'] * 1000:.1f} ms per ref update)"
        )
        print(f"   ratio to limit:   {result['elapsed'] / limit:.2f}")
        for failure in result["failures"]:
            print(f"   failed response:  {failure}")


if __name__ == "__main__":
    main()
