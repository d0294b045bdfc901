"""What the commit path must never do: resurrect, adopt look-alikes, duplicate."""

import time

import pytest
from sqlalchemy import update

from github_app.store import Delivery, Store
from sandbox.git import ZERO_SHA
from tests.conftest import REPO
from tests.test_api import QUERY
from tests.test_commit_path import (
    PATCH_REF,
    POST_REF,
    POST_TREE,
    assert_committed_once,
    commits_of,
    fresh_service,
    query_body,
)
from tests.test_end_to_end import (  # noqa: F401 - fixtures
    Stack,
    app_settings_changes,
    stack,
)


def test_forced_rewind_is_not_undone(stack: Stack) -> None:
    stack.post_query(query_body("RA"))
    git = stack.github.repository(REPO)
    kept = git.read_ref("refs/heads/main")
    assert kept is not None
    removed = stack.github.push_commit(REPO, {"SECRET.txt": b"x"}, "Oops")
    stack.post_query(query_body("RB"))
    stack.github.wait_for_deliveries()
    stack.github.push_ref(REPO, "refs/heads/main", kept)
    stack.github.wait_for_deliveries()

    response = stack.post_query(query_body("RC"))

    head = git.read_ref("refs/heads/main")
    assert head is not None
    assert response.status_code == 201
    assert git.read_commit(head).parents == [kept]
    assert not git.is_ancestor(removed, head)


@pytest.mark.parametrize(
    "app_settings_changes", [{"query_lease_seconds": 0.1}], indirect=True
)
def test_look_alike_commit_is_not_adopted(stack: Stack) -> None:
    stack.github.fail_call(POST_TREE, 502, count=1000)
    assert stack.post_query(QUERY).status_code == 503
    impostor = stack.github.push_commit(
        REPO,
        {"project.yaml": b"actions: {}\n"},
        f"Unrelated change\n\nQuery-Id: {QUERY['id']}\n",
    )
    stack.github.clear_faults()
    time.sleep(0.2)

    replay = stack.post_query(QUERY)

    assert replay.status_code == 200
    assert replay.json()["sha"] != impostor
    assert stack.github.repository(REPO).peel(
        stack.github.repository(REPO).read_ref(f"refs/tags/{QUERY['id']}") or ZERO_SHA
    ) == replay.json()["sha"]


@pytest.mark.parametrize(
    "app_settings_changes", [{"query_lease_seconds": 0.1}], indirect=True
)
def test_landed_commit_found_past_first_page(stack: Stack) -> None:
    stack.github.fail_call(PATCH_REF, 502, count=1000, after_handling=True)
    assert stack.post_query(QUERY).status_code == 503
    stack.github.clear_faults()
    for number in range(101):
        stack.github.push_commit(REPO, {"n.txt": str(number).encode()}, f"Push {number}")
    time.sleep(0.2)

    replay = stack.post_query(QUERY)

    assert replay.status_code == 200
    assert len(commits_of(stack.github.repository(REPO), QUERY["id"])) == 1


@pytest.mark.parametrize(
    "query_id", ["abc.", "a.", "HEAD", "main", "deadbeef", "a" * 40]
)
def test_untaggable_query_id_is_rejected(stack: Stack, query_id: str) -> None:
    response = stack.post_query(query_body(query_id))

    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["field"] == "id"
    assert stack.github.call_counts() == {}


@pytest.mark.parametrize(
    "app_settings_changes", [{"github_retry_budget": 2}], indirect=True
)
def test_secondary_rate_limit_without_header_stays_resumable(stack: Stack) -> None:
    body = {"message": "You have exceeded a secondary rate limit."}
    stack.github.fail_call(POST_REF, 403, body=body)

    first = stack.post_query(QUERY)
    replay = stack.post_query(QUERY)

    assert first.status_code == 503
    assert replay.status_code == 200
    assert replay.json()["state"] in ("tagged", "job_requested")
    assert_committed_once(stack.github, QUERY["id"])


def test_reinstalled_app_is_found_again(stack: Stack) -> None:
    stack.post_query(query_body("I1"))
    stack.github.installation_id = 7
    stack.github.expire_tokens()

    response = stack.post_query(query_body("I2"))

    assert response.status_code == 201
    assert_committed_once(stack.github, "I2")


def test_redelivery_after_github_timeout_is_no_rerun(stack: Stack) -> None:
    stack.post_query(QUERY)
    stack.wait_for_job_requests(QUERY["id"])
    created = next(d for d in stack.github.deliveries if d.status_code == 201)
    assert stack.settings.database_url is not None
    store = Store(stack.settings.database_url)
    # GitHub gave up on the delivery after 10 s although the app finished it.
    with store.session() as session:
        session.execute(
            update(Delivery)
            .where(Delivery.guid == created.guid)
            .values(duration_ms=12_000)
        )
    store.engine.dispose()

    stack.github.redeliver(created.id)
    stack.github.wait_for_deliveries()

    redelivered = stack.github.deliveries[-1]
    assert redelivered.guid == created.guid
    assert redelivered.status_code == 200
    assert len(stack.job_server.job_requests_for(QUERY["id"])) == 1




def test_failed_query_retried_after_fix(stack: Stack) -> None:
    message = "Changes must be made through a pull request."
    stack.github.fail_call(PATCH_REF, 422, body={"message": message})
    assert stack.post_query(QUERY).status_code == 502
    service = fresh_service(stack)

    untouched = service.reconcile()
    [retried] = service.reconcile(include_failed=True)

    assert untouched == []
    assert retried.state == "tagged"
    assert_committed_once(stack.github, QUERY["id"])
