"""Webhook deliveries end to end: the GitHub stand-in's real git repository sends
signed ``push`` and ``create`` deliveries, and the Job Server stand-in records
what the app asked for."""

import datetime
from collections.abc import Iterator
from pathlib import Path

import pytest

from github_app.config import Settings
from sandbox.git import ZERO_SHA, Signature
from tests.conftest import REPO
from tests.webhook_stack import (
    OTHER_REPO,
    Stack,
    captured_warnings,
    find_event,
    running_stack,
    wait_until,
)

BRANCH_REF = "refs/heads/main"


@pytest.fixture
def stack(settings: Settings, public_key_pem: bytes, tmp_path: Path) -> Iterator[Stack]:
    with running_stack(settings, public_key_pem, tmp_path) as running:
        yield running


def by_event(stack: Stack, query_id: str) -> dict[str, int]:
    return {d.event: d.status_code for d in stack.tag_deliveries(query_id)}


# -- the tag rule -------------------------------------------------------------------


def test_tag_events_make_one_job_request(stack: Stack) -> None:
    query = stack.post_query("q-tag")

    stack.settle()

    [job] = stack.jobs("q-tag")
    statuses = sorted(by_event(stack, "q-tag").values())
    assert job.body["sha"] == query["sha"]
    assert statuses == [200, 201]
    assert stack.get_query("q-tag")["job_requests"][0]["trigger"] == "tag_event"


def test_tag_answer_names_query_sha_and_job(stack: Stack) -> None:
    query = stack.post_query("q-answer")

    stack.settle()

    [job] = stack.jobs("q-answer")
    [created] = [d for d in stack.tag_deliveries("q-answer") if d.status_code == 201]
    body = created.response_body
    assert created.response_headers["Content-Type"] == "application/json"
    assert "\n" not in body.strip()
    assert '"outcome":"job_requested"' in body.replace(" ", "")
    assert f"Created job request {job.id} for query q-answer at {query['sha']}." in body


def test_annotated_tag_push_carries_tag_object(stack: Stack) -> None:
    """``after`` of a tag push is the tag object; the job gets the peeled commit."""
    query = stack.post_query("q-annotated")

    stack.settle()

    git = stack.github.repository(REPO)
    tag_object = git.read_ref("refs/tags/q-annotated")
    [push] = [d for d in stack.tag_deliveries("q-annotated") if d.event == "push"]
    [create] = [d for d in stack.tag_deliveries("q-annotated") if d.event == "create"]
    [job] = stack.jobs("q-annotated")
    assert git.object_type(tag_object) == "tag"
    assert push.payload["after"] == tag_object
    assert push.payload["after"] != query["sha"]
    assert "after" not in create.payload
    assert job.body["sha"] == query["sha"]


def test_lightweight_tag_makes_job_request(stack: Stack) -> None:
    query = stack.post_query_quietly("q-light")
    git = stack.github.repository(REPO)
    # Replace the app's annotated tag with a lightweight one on the same commit.
    git.update_ref("refs/tags/q-light", ZERO_SHA, git.read_ref("refs/tags/q-light"))

    stack.github.push_ref(REPO, "refs/tags/q-light", query["sha"])
    stack.settle()

    [job] = stack.jobs("q-light")
    assert git.object_type(git.read_ref("refs/tags/q-light")) == "commit"
    assert job.body["sha"] == query["sha"]
    assert sorted(by_event(stack, "q-light").values()) == [200, 201]


def test_tag_before_branch_push(stack: Stack) -> None:
    stack.github.webhooks.hold()
    query = stack.post_query("q-early")

    stack.github.webhooks.release(lambda d: d.event == "create")
    wait_until(lambda: len(stack.jobs("q-early")) == 1)
    stack.github.webhooks.release()
    deliveries = stack.settle()

    [job] = stack.jobs("q-early")
    [branch] = [d for d in deliveries if d.payload.get("ref") == BRANCH_REF]
    assert job.body["sha"] == query["sha"]
    assert by_event(stack, "q-early") == {"create": 201, "push": 200}
    assert branch.status_code == 200


# -- rejections ------------------------------------------------------------------------


def test_tag_on_other_commit_rejected(stack: Stack) -> None:
    query = stack.post_query_quietly("q-moved")
    other = stack.github.push_commit(REPO, {"other.txt": b"x"}, "Another commit")
    stack.settle()

    with captured_warnings() as warnings:
        stack.github.push_ref(REPO, "refs/tags/q-moved", other)
        stack.settle()

    rejections = find_event(warnings, "Security: rejected tag event")
    assert stack.jobs("q-moved") == []
    assert by_event(stack, "q-moved") == {"push": 422}
    assert rejections[0]["repo"] == REPO
    assert rejections[0]["tag"] == "q-moved"
    assert rejections[0]["sha"] == other
    assert rejections[0]["recorded_sha"] == query["sha"]
    assert rejections[0]["delivery_id"] == stack.tag_deliveries("q-moved")[0].guid


def test_commit_removed_by_force_push_rejected(stack: Stack) -> None:
    query = stack.post_query_quietly("q-removed")
    parent = stack.github.repository(REPO).read_commit(query["sha"]).parents[0]

    with captured_warnings() as warnings:
        stack.github.push_ref(REPO, BRANCH_REF, parent)
        stack.settle()
        stack.announce_tag("q-removed")
        stack.settle()

    forced = find_event(warnings, "Security: branch was force-pushed")
    rejections = find_event(warnings, "Security: rejected tag event")
    assert stack.jobs("q-removed") == []
    assert by_event(stack, "q-removed") == {"push": 422, "create": 422}
    assert forced[0]["repo"] == REPO
    assert forced[0]["sha"] == parent
    assert {event["delivery_id"] for event in rejections} == {
        d.guid for d in stack.tag_deliveries("q-removed")
    }
    assert all(event["sha"] == query["sha"] for event in rejections)


def test_branch_with_no_shared_history_rejected(stack: Stack) -> None:
    """The compare API returns 404 when the commits share no ancestor."""
    stack.post_query_quietly("q-orphan")
    orphan = stack.commit_as_user("Unrelated history", parents=[])
    stack.github.push_ref(REPO, BRANCH_REF, orphan)
    stack.settle()

    stack.announce_tag("q-orphan")
    stack.settle()

    compares = [c for c in stack.github.calls if "/compare/" in c.path]
    assert stack.jobs("q-orphan") == []
    assert by_event(stack, "q-orphan") == {"push": 422, "create": 422}
    assert {c.status for c in compares} == {404}


def test_tag_rejection_response(stack: Stack) -> None:
    stack.post_query_quietly("q-rejected")
    other = stack.github.push_commit(REPO, {"other.txt": b"y"}, "Another commit")
    stack.settle()

    stack.github.push_ref(REPO, "refs/tags/q-rejected", other)
    stack.settle()

    [push] = stack.tag_deliveries("q-rejected")
    assert push.status_code == 422
    assert '"outcome":"rejected"' in push.response_body.replace(" ", "")
    assert other in push.response_body
    assert "no job request was created" in push.response_body


# -- ignored deliveries ----------------------------------------------------------------


def test_tag_deletion_ignored_without_calls(stack: Stack) -> None:
    stack.post_query("q-deleted")
    stack.settle()
    calls_before = len(stack.github.calls)

    stack.github.push_ref(REPO, "refs/tags/q-deleted", ZERO_SHA)
    [*_, deletion] = stack.settle()

    assert deletion.payload["after"] == ZERO_SHA
    assert deletion.status_code == 202
    assert "deleted" in deletion.response_body
    assert len(stack.github.calls) == calls_before
    assert len(stack.jobs("q-deleted")) == 1


def test_other_branch_ignored(stack: Stack) -> None:
    head = stack.github.repository(REPO).read_ref(BRANCH_REF)
    assert head is not None

    stack.github.push_ref(REPO, "refs/heads/feature", head)
    deliveries = stack.settle()

    answers = {d.event: (d.status_code, d.response_body) for d in deliveries}
    assert answers["push"][0] == 202
    assert "refs/heads/feature is not the query branch" in answers["push"][1]
    assert answers["create"][0] == 202
    assert "Only tag creation" in answers["create"][1]


def test_unknown_tag_ignored(stack: Stack) -> None:
    head = stack.github.repository(REPO).read_ref(BRANCH_REF)
    assert head is not None

    stack.github.push_ref(REPO, "refs/tags/v1.0", head)
    deliveries = stack.settle()

    assert {d.status_code for d in deliveries} == {202}
    assert all("Tag v1.0 is not a query" in d.response_body for d in deliveries)
    assert stack.job_server.job_requests == []


def test_other_repository_ignored(stack: Stack) -> None:
    git = stack.github.repository(OTHER_REPO)
    head = git.read_ref(BRANCH_REF)
    assert head is not None

    stack.github.push_ref(OTHER_REPO, "refs/tags/q-elsewhere", head)
    deliveries = stack.settle()

    assert {d.status_code for d in deliveries} == {202}
    assert all("is not a query repository" in d.response_body for d in deliveries)
    assert stack.github.calls == []


def test_unsubscribed_event_ignored(stack: Stack) -> None:
    delivery = stack.github.send_delivery(
        "issues", {"action": "opened", "repository": {"full_name": REPO}}
    )

    assert delivery.status_code == 202
    assert "does not handle issues events" in delivery.response_body


# -- redelivery -----------------------------------------------------------------------


def test_redelivery_after_failure_processes_again(stack: Stack) -> None:
    stack.job_server.fail_next(2, 503)
    stack.post_query("q-retry")
    stack.settle()
    failed = stack.tag_deliveries("q-retry")
    assert sorted(d.status_code for d in failed) == [503, 503]

    stack.github.redeliver(failed[0].id)
    stack.settle()

    [job] = stack.jobs("q-retry")
    [again] = [d for d in stack.github.deliveries if d.redelivery]
    assert again.status_code == 201
    assert job.idempotency_key == "q-retry/1"
    assert stack.get_query("q-retry")["job_requests"][0]["trigger"] == "tag_event"


def test_two_redeliveries_make_two_job_requests(stack: Stack) -> None:
    query = stack.post_query("q-rerun")
    stack.settle()
    [succeeded] = [d for d in stack.tag_deliveries("q-rerun") if d.status_code == 201]

    stack.github.redeliver(succeeded.id)
    stack.settle()
    stack.github.redeliver(succeeded.id)
    stack.settle()

    jobs = stack.jobs("q-rerun")
    triggers = [job["trigger"] for job in stack.get_query("q-rerun")["job_requests"]]
    assert [job.body["sha"] for job in jobs] == [query["sha"]] * 3
    assert [job.idempotency_key for job in jobs] == [
        "q-rerun/1",
        "q-rerun/2",
        "q-rerun/3",
    ]
    assert triggers == ["tag_event", "redelivery", "redelivery"]


def test_redelivery_confirms_branch_again(stack: Stack) -> None:
    query = stack.post_query("q-recheck")
    stack.settle()
    [succeeded] = [d for d in stack.tag_deliveries("q-recheck") if d.status_code == 201]
    parent = stack.github.repository(REPO).read_commit(query["sha"]).parents[0]
    stack.github.push_ref(REPO, BRANCH_REF, parent)
    stack.settle()

    stack.github.redeliver(succeeded.id)
    stack.settle()

    [again] = [d for d in stack.github.deliveries if d.redelivery]
    assert again.status_code == 422
    assert len(stack.jobs("q-recheck")) == 1


def test_same_guid_twice_at_once(stack: Stack) -> None:
    stack.post_query("q-twice")
    stack.settle()
    [succeeded] = [d for d in stack.tag_deliveries("q-twice") if d.status_code == 201]
    # Job Server's latency keeps the first attempt busy while the second arrives.
    stack.job_server.set_latency(1.0)

    stack.github.webhooks.hold()
    stack.github.redeliver(succeeded.id)
    stack.github.redeliver(succeeded.id)
    stack.github.webhooks.release()
    stack.settle()

    attempts = [d for d in stack.github.deliveries if d.redelivery]
    [conflict] = [d for d in attempts if d.status_code == 409]
    assert sorted(d.status_code for d in attempts) == [201, 409]
    assert "already being handled" in conflict.response_body
    assert len(stack.jobs("q-twice")) == 2


def test_branch_push_starts_job_of_early_tag(stack: Stack) -> None:
    """A tag whose events were handled before the query was recorded as tagged."""
    query = stack.post_query_quietly("q-branch")
    hosted = stack.github.find_repository(REPO)
    assert hosted is not None
    parent = stack.github.repository(REPO).read_commit(query["sha"]).parents[0]

    stack.github.announce_ref_change(hosted, BRANCH_REF, parent, query["sha"])
    [branch] = stack.settle()

    [job] = stack.jobs("q-branch")
    assert branch.status_code == 200
    assert "Created job requests for q-branch" in branch.response_body
    assert job.body["sha"] == query["sha"]


def test_signature_over_received_bytes(stack: Stack) -> None:
    """GitHub sends UTF-8 and escapes; the HMAC covers exactly those bytes."""
    body = (
        '{"zen":"Caf\\u00e9 \\u003cb\\u003e na\u00efve \\/ \\"q\\"",'
        '"hook_id":1,"name":"Zo\u00eb"}'
    ).encode()

    delivery = stack.github.send_delivery("ping", {}, body=body)

    assert delivery.status_code == 200


def test_author_with_non_ascii_name(stack: Stack) -> None:
    head = stack.github.repository(REPO).read_ref(BRANCH_REF)
    assert head is not None
    now = datetime.datetime.now(datetime.UTC)
    author = Signature("Zoë Ångström", "zoe@example.org", now)

    stack.github.push_commit(REPO, {"a.txt": b"a"}, "Ünïcödé ✓", author=author)
    [branch] = stack.settle()

    assert branch.status_code == 200
    assert "Noted 1 commit(s)" in branch.response_body
