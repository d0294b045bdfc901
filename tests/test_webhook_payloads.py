"""The handlers on GitHub's own example payloads, and the sandbox's payloads
checked against GitHub's webhook schemas (both from npm, see ``tests/octokit``)."""

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from github_app.config import Settings
from sandbox.git import ZERO_SHA
from sandbox.webhooks import Delivery
from tests import octokit
from tests.conftest import REPO
from tests.webhook_stack import Stack, running_stack

BRANCH_REF = "refs/heads/main"


@pytest.fixture(scope="session")
def examples() -> octokit.Octokit:
    return octokit.install()


@pytest.fixture
def stack(settings: Settings, public_key_pem: bytes, tmp_path: Path) -> Iterator[Stack]:
    with running_stack(settings, public_key_pem, tmp_path) as running:
        yield running


def send_example(
    stack: Stack, event: str, example: dict[str, Any], query_id: str
) -> tuple[Delivery, dict[str, Any]]:
    """Adapt ``example`` to a fresh query's tag and commit and deliver it."""
    query = stack.post_query_quietly(query_id)
    payload = octokit.adapt(example, repo=REPO, tag=query_id, commit=query["sha"])
    git = stack.github.repository(REPO)
    if payload.get("ref") == f"refs/tags/{query_id}" and payload["after"] != ZERO_SHA:
        # The app's tags are annotated: a push carries the tag object's SHA.
        payload["after"] = git.read_ref(f"refs/tags/{query_id}")

    return stack.github.send_delivery(event, payload), payload


# -- GitHub's examples through the handlers --------------------------------------------


def test_push_examples(stack: Stack, examples: octokit.Octokit) -> None:
    results, expected = [], []
    for index, example in enumerate(examples.examples["push"]):
        query_id = f"q-push-{index}"
        calls_before = len(stack.github.calls)
        delivery, payload = send_example(stack, "push", example, query_id)
        calls = stack.github.calls[calls_before:]
        results.append(
            (
                index,
                delivery.status_code,
                len(stack.jobs(query_id)),
                any(ZERO_SHA in call.path for call in calls),
            )
        )
        if payload["deleted"]:
            expected.append((index, 202, 0, False))
        elif payload["ref"] == BRANCH_REF:
            # The branch push names the tagged query's commit: its job starts.
            expected.append((index, 200, 1, False))
        else:
            expected.append((index, 201, 1, False))

    assert results == expected
    assert {kind for *_, kind in expected} == {False}
    assert {status for _, status, *_ in expected} == {200, 201, 202}


def test_create_examples(stack: Stack, examples: octokit.Octokit) -> None:
    results = []
    for index, example in enumerate(examples.examples["create"]):
        query_id = f"q-create-{index}"
        delivery, payload = send_example(stack, "create", example, query_id)
        [job] = stack.jobs(query_id) or [None]
        sha = stack.get_query(query_id)["sha"]
        results.append(
            (delivery.status_code, payload["ref_type"], job and job.body["sha"] == sha)
        )

    assert results == [(201, "tag", True)] * len(examples.examples["create"])


def test_create_example_twice(stack: Stack, examples: octokit.Octokit) -> None:
    """A second delivery of one tag (another GUID) finds the job request."""
    [example, *_] = examples.examples["create"]
    first, payload = send_example(stack, "create", example, "q-create-again")

    second = stack.github.send_delivery("create", payload)

    assert first.status_code == 201
    assert second.status_code == 200
    assert "already has job request" in second.response_body
    assert len(stack.jobs("q-create-again")) == 1


def test_ping_examples(stack: Stack, examples: octokit.Octokit) -> None:
    statuses = [
        stack.github.send_delivery("ping", example).status_code
        for example in examples.examples["ping"]
    ]

    assert statuses == [200] * len(examples.examples["ping"])


def test_installation_examples(stack: Stack, examples: octokit.Octokit) -> None:
    answers = [
        (stack.github.send_delivery("installation", example), example["action"])
        for example in examples.examples["installation"]
    ]

    assert [delivery.status_code for delivery, _ in answers] == [200] * len(answers)
    assert all(action in delivery.response_body for delivery, action in answers)


def test_adapting_adds_no_schema_problems(examples: octokit.Octokit) -> None:
    """Adapting an example to the test repository keeps it as valid as it was.

    The recorded examples are older than the schema and miss a few fields added
    since (such as ``has_discussions``), so they are compared with themselves.
    """
    added = {}
    for event in ("push", "create"):
        for index, example in enumerate(examples.examples[event]):
            payload = octokit.adapt(example, repo=REPO, tag="q-1", commit="c" * 40)
            before = set(examples.problems(f"webhook-{event}", example))
            after = set(examples.problems(f"webhook-{event}", payload))
            added[f"{event}[{index}]"] = sorted(after - before)

    assert added == {name: [] for name in added}


# -- what the sandbox sends -----------------------------------------------------------


def _app_query(stack: Stack) -> None:
    stack.post_query("q-schema")


def _user_commit(stack: Stack) -> None:
    stack.github.push_commit(REPO, {"notes.txt": "Zoë ✓".encode()}, "Add notes")


def _new_branch(stack: Stack) -> None:
    head = stack.github.repository(REPO).read_ref(BRANCH_REF)
    assert head is not None
    stack.github.push_ref(REPO, "refs/heads/feature", head)


def _lightweight_tag(stack: Stack) -> None:
    head = stack.github.repository(REPO).read_ref(BRANCH_REF)
    assert head is not None
    stack.github.push_ref(REPO, "refs/tags/v1", head)


def _deleted_tag(stack: Stack) -> None:
    _lightweight_tag(stack)
    stack.settle()
    stack.github.push_ref(REPO, "refs/tags/v1", ZERO_SHA)


def _forced_branch(stack: Stack) -> None:
    first = stack.github.repository(REPO).read_ref(BRANCH_REF)
    assert first is not None
    stack.github.push_commit(REPO, {"a.txt": b"a"}, "A commit to drop")
    stack.settle()
    stack.github.push_ref(REPO, BRANCH_REF, first)


SCENARIOS: dict[str, Callable[[Stack], None]] = {
    "app query": _app_query,
    "user commit": _user_commit,
    "new branch": _new_branch,
    "lightweight tag": _lightweight_tag,
    "deleted tag": _deleted_tag,
    "forced branch": _forced_branch,
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_sandbox_payloads_match_schema(
    stack: Stack, examples: octokit.Octokit, scenario: str
) -> None:
    SCENARIOS[scenario](stack)
    deliveries = stack.settle()

    problems = {
        f"{d.event} {d.payload['ref']}": examples.problems(
            f"webhook-{d.event}", d.payload
        )
        for d in deliveries
    }
    assert deliveries
    assert problems == {name: [] for name in problems}


def test_schema_check_finds_problems(examples: octokit.Octokit) -> None:
    """The schema check can fail: a payload without a repository is reported."""
    [example, *_] = examples.examples["push"]
    payload = octokit.adapt(example, repo=REPO, tag="q-1", commit="c" * 40)
    del payload["repository"]
    payload["forced"] = "no"

    problems = examples.problems("webhook-push", payload)

    assert any("'repository' is a required property" in p for p in problems)
    assert any(p.startswith("forced:") for p in problems)


def test_forced_flag_in_sandbox_push(stack: Stack) -> None:
    _forced_branch(stack)
    deliveries = stack.settle()

    assert [d.payload["forced"] for d in deliveries] == [False, True]
