"""Two app instances sharing one PostgreSQL database keep every guarantee.

The instances are separate apps on separate ports, as two hosts behind a load
balancer would be: they share only the database, so nothing held in one
process's memory can keep them from doing the same work twice.
"""

import json
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from werkzeug.wrappers import Request, Response

from github_app.app import create_app
from sandbox.servers import RunningServer, serve
from tests.conftest import REPO
from tests.test_api import QUERY
from tests.test_end_to_end import (  # noqa: F401 - fixtures
    AUTH,
    Stack,
    app_settings_changes,
    stack,
)

TAGS = 20
FORWARDED_HEADERS = (
    "Content-Type",
    "User-Agent",
    "X-GitHub-Delivery",
    "X-GitHub-Event",
    "X-Hub-Signature-256",
)

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def tag_of(event: str, payload: dict[str, Any]) -> str | None:
    """Return the tag that a ``push`` or ``create`` delivery is about, if any."""
    ref = str(payload.get("ref", ""))
    if event == "push" and ref.startswith("refs/tags/"):
        return ref.removeprefix("refs/tags/")

    if event == "create" and payload.get("ref_type") == "tag":
        return ref

    return None


@dataclass
class Balancer:
    """A load balancer in front of the instances, for webhook deliveries.

    The ``push`` and ``create`` deliveries of one tag are held until both have
    arrived, then sent at the same moment to different instances (which one gets
    the ``push`` alternates by tag). Other deliveries go round robin, and a
    redelivery goes to the instance that did not handle the original.
    """

    instances: list[str]
    routed: list[tuple[str, str, str]] = field(default_factory=list)
    _barriers: dict[str, threading.Barrier] = field(default_factory=dict)
    _targets: dict[str, str] = field(default_factory=dict)
    _turn: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _barrier(self, tag: str) -> tuple[threading.Barrier, int]:
        with self._lock:
            barrier = self._barriers.setdefault(tag, threading.Barrier(2))
            return barrier, list(self._barriers).index(tag)

    def _round_robin(self) -> str:
        with self._lock:
            self._turn += 1
            return self.instances[self._turn % len(self.instances)]

    def choose(self, guid: str, event: str, payload: dict[str, Any]) -> str:
        with self._lock:
            first = self._targets.get(guid)
        if first is not None:
            # A redelivery goes to the instance that did not handle the original.
            return next(url for url in self.instances if url != first)

        tag = tag_of(event, payload)
        if tag is None:
            return self._remember(guid, self._round_robin())

        barrier, index = self._barrier(tag)
        barrier.wait(timeout=10)
        first = (index + (event == "create")) % 2
        target = self.instances[first]
        with self._lock:
            self.routed.append((tag, event, target))
        return self._remember(guid, target)

    def _remember(self, guid: str, target: str) -> str:
        with self._lock:
            self._targets[guid] = target
        return target

    def wsgi_app(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        body = request.get_data()
        event = request.headers.get("X-GitHub-Event", "")
        guid = request.headers.get("X-GitHub-Delivery", "")
        target = self.choose(guid, event, json.loads(body))
        headers = {name: request.headers[name] for name in FORWARDED_HEADERS}
        answer = requests.post(
            f"{target}{request.path}", data=body, headers=headers, timeout=10
        )
        response = Response(
            answer.content,
            answer.status_code,
            content_type=answer.headers.get("Content-Type"),
        )
        return response(environ, start_response)


@pytest.fixture
def second_instance(stack: Stack) -> Iterator[RunningServer]:  # noqa: F811
    with serve(create_app(stack.settings)) as server:
        yield server


def post_query(url: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(f"{url}/api/v1/queries", json=body, headers=AUTH, timeout=60)


def test_tag_events_on_two_instances_make_one_job_request_each(
    stack: Stack,  # noqa: F811
    second_instance: RunningServer,
) -> None:
    instances = [stack.app.url, second_instance.url]
    balancer = Balancer(instances)
    ids = [f"{QUERY['id'][:-2]}{number:02d}" for number in range(TAGS)]

    with serve(balancer.wsgi_app) as balancer_server:
        stack.github.webhook_url = f"{balancer_server.url}/api/github/webhooks"
        answers = [
            post_query(instances[number % 2], {**QUERY, "id": query_id})
            for number, query_id in enumerate(ids)
        ]
        stack.github.wait_for_deliveries(timeout=60)

    job_posts = [call for call in stack.job_server.calls if call.method == "POST"]
    keys = sorted(call.idempotency_key or "" for call in job_posts)
    assert [answer.status_code for answer in answers] == [201] * TAGS
    assert len(stack.job_server.job_requests) == TAGS
    assert keys == sorted(f"{query_id}/1" for query_id in ids)
    for query_id, answer in zip(ids, answers, strict=True):
        jobs = stack.job_server.job_requests_for(query_id)
        assert [job.body["sha"] for job in jobs] == [answer.json()["sha"]]


def test_tag_events_were_split_across_instances(
    stack: Stack,  # noqa: F811
    second_instance: RunningServer,
) -> None:
    """Guards the test above: each tag's two events reached different instances."""
    instances = [stack.app.url, second_instance.url]
    balancer = Balancer(instances)

    with serve(balancer.wsgi_app) as balancer_server:
        stack.github.webhook_url = f"{balancer_server.url}/api/github/webhooks"
        post_query(instances[0], QUERY)
        post_query(instances[1], {**QUERY, "id": QUERY["id"][:-1] + "X"})
        stack.github.wait_for_deliveries(timeout=30)

    by_tag: dict[str, dict[str, str]] = {}
    for tag, event, target in balancer.routed:
        by_tag.setdefault(tag, {})[event] = target
    assert len(by_tag) == 2
    for targets in by_tag.values():
        assert set(targets) == {"push", "create"}
        assert targets["push"] != targets["create"]
    assert {targets["push"] for targets in by_tag.values()} == set(instances)


def test_same_query_sent_to_both_instances_commits_once(
    stack: Stack,  # noqa: F811
    second_instance: RunningServer,
) -> None:
    instances = [stack.app.url, second_instance.url]
    git = stack.github.repository(REPO)
    head_before = git.read_ref("refs/heads/main")

    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(lambda url: post_query(url, QUERY), instances))
    stack.wait_for_job_requests(QUERY["id"])

    head = git.read_ref("refs/heads/main")
    commit = git.read_commit(head)
    assert sorted(answer.status_code for answer in answers) in ([200, 201], [201, 201])
    assert commit.parents == [head_before]
    assert {answer.json()["sha"] for answer in answers} == {head}
    assert len(stack.job_server.job_requests_for(QUERY["id"])) == 1


def test_redelivery_to_other_instance_reruns_query(
    stack: Stack,  # noqa: F811
    second_instance: RunningServer,
) -> None:
    balancer = Balancer([stack.app.url, second_instance.url])

    with serve(balancer.wsgi_app) as balancer_server:
        stack.github.webhook_url = f"{balancer_server.url}/api/github/webhooks"
        post_query(stack.app.url, QUERY)
        stack.wait_for_job_requests(QUERY["id"])
        succeeded = next(d for d in stack.github.deliveries if d.status_code == 201)
        stack.github.redeliver(succeeded.id)
        jobs = stack.wait_for_job_requests(QUERY["id"], count=2)
        stack.github.wait_for_deliveries(timeout=30)

    redelivered = [d for d in stack.github.deliveries if d.redelivery]
    assert [d.status_code for d in redelivered] == [201]
    assert [job.idempotency_key for job in jobs] == [
        f"{QUERY['id']}/1",
        f"{QUERY['id']}/2",
    ]
    assert jobs[0].body["sha"] == jobs[1].body["sha"]
