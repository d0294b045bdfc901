"""The admin commands: ``github-app deliveries ...``, ``resubmit`` and ``reconcile``,
run against the GitHub and Job Server stand-ins."""

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from github_app import cli
from github_app.config import Settings
from github_app.deliveries import Attempt, choose_failed, parse_since
from tests.conftest import API_TOKEN, WEBHOOK_SECRET
from tests.webhook_stack import Stack, running_stack

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def stack(
    settings: Settings,
    public_key_pem: bytes,
    private_key_pem: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Stack]:
    with running_stack(settings, public_key_pem, tmp_path) as running:
        app_settings = running.settings
        environment = {
            "GITHUB_APP_ID": app_settings.github_app_id,
            "GITHUB_APP_PRIVATE_KEY": private_key_pem,
            "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "GITHUB_API_URL": app_settings.github_api_url,
            "QUERY_REPOSITORIES": ",".join(app_settings.query_repositories),
            "JOB_SERVER_URL": app_settings.job_server_url,
            "JOB_SERVER_TOKEN": app_settings.job_server_token,
            "API_TOKENS": API_TOKEN,
            "DATABASE_URL": app_settings.database_url or "",
            "OPENCODELISTS_URL": app_settings.opencodelists_url,
            "LOG_FORMAT": "console",
        }
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        yield running


#: A log line: the stand-ins run in this process and log to the same stdout.
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\S+ \[\w+ *\] ")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the command; return its exit code, its output without log lines, and
    its error output."""
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    lines = captured.out.splitlines(keepends=True)
    output = "".join(line for line in lines if not LOG_LINE.match(line))
    return code, output, captured.err


def attempt(attempt_id: int, guid: str, status_code: int, minutes_ago: int) -> Attempt:
    return Attempt(
        id=attempt_id,
        guid=guid,
        event="push",
        action=None,
        status_code=status_code,
        status="OK" if status_code < 300 else "failed",
        delivered_at=NOW - timedelta(minutes=minutes_ago),
        redelivery=False,
    )


# -- choosing what to redeliver --------------------------------------------------------


class TestChooseFailed:
    def test_failed_once_chosen(self) -> None:
        failed = attempt(1, "a", 503, minutes_ago=10)

        assert choose_failed([failed]) == [failed]

    def test_later_success_skipped(self) -> None:
        attempts = [attempt(2, "a", 201, 5), attempt(1, "a", 503, 10)]

        assert choose_failed(attempts) == []

    def test_failure_after_success_chosen(self) -> None:
        """A failed redelivery of a succeeded tag event is a re-run still to do."""
        rerun = attempt(2, "a", 503, 5)

        assert choose_failed([rerun, attempt(1, "a", 201, 10)]) == [rerun]

    def test_no_response_is_failure(self) -> None:
        timed_out = attempt(1, "a", 0, 5)

        assert choose_failed([timed_out]) == [timed_out]

    def test_in_progress_answer_left_out(self) -> None:
        """A 409 means another attempt of the GUID was running; that one decides."""
        attempts = [attempt(2, "a", 409, 5), attempt(1, "a", 201, 5)]

        assert choose_failed(attempts) == []

    def test_oldest_first_one_per_guid(self) -> None:
        attempts = [
            attempt(4, "b", 503, 1),
            attempt(3, "a", 500, 2),
            attempt(2, "b", 503, 3),
            attempt(1, "a", 503, 4),
        ]

        assert [a.id for a in choose_failed(attempts)] == [3, 4]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24h", timedelta(hours=24)),
        ("90m", timedelta(minutes=90)),
        ("3d", timedelta(days=3)),
        ("45s", timedelta(seconds=45)),
    ],
)
def test_parse_since(text: str, expected: timedelta) -> None:
    assert parse_since(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("4d", "3 days GitHub keeps"),
        ("73h", "3 days GitHub keeps"),
        ("24", "number followed by s, m, h or d"),
        ("1w", "number followed by s, m, h or d"),
        ("-1h", "number followed by s, m, h or d"),
    ],
)
def test_parse_since_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_since(text)


# -- against the stand-ins ------------------------------------------------------------


def test_redeliver_failed_leaves_one_job_each(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    """Job Server was down for two queries' deliveries; the third went through."""
    old = stack.github.send_delivery("ping", {"zen": "old"}, secret="rotated-away")
    stack.github.webhooks.age(timedelta(hours=25))
    stack.job_server.fail_next(4, 503)
    for query_id in ("q-down-1", "q-down-2", "q-up"):
        stack.post_query(query_id)
        stack.settle()
    failed = [d for d in stack.github.deliveries if d.status_code == 503]
    assert len(failed) == 4
    assert [len(stack.jobs(q)) for q in ("q-down-1", "q-down-2", "q-up")] == [0, 0, 1]

    code, out, err = run(capsys, "deliveries", "redeliver-failed", "--since", "24h")
    stack.settle()

    redelivered = {d.guid for d in stack.github.deliveries if d.redelivery}
    assert code == 0, err
    assert redelivered == {d.guid for d in failed}
    assert old.guid not in redelivered
    assert [len(stack.jobs(q)) for q in ("q-down-1", "q-down-2", "q-up")] == [1, 1, 1]
    assert all(d.guid in out for d in failed)


def test_redeliver_failed_twice_sends_nothing_more(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.job_server.fail_next(2, 503)
    stack.post_query("q-once")
    stack.settle()
    run(capsys, "deliveries", "redeliver-failed")
    stack.settle()
    sent = len(stack.github.deliveries)

    code, out, _ = run(capsys, "deliveries", "redeliver-failed")
    stack.settle()

    assert code == 0
    assert len(stack.github.deliveries) == sent
    assert out.startswith("0 of ")
    assert len(stack.jobs("q-once")) == 1


def test_redeliver_failed_dry_run(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.job_server.fail_next(2, 503)
    stack.post_query("q-dry")
    stack.settle()
    sent = len(stack.github.deliveries)

    code, out, _ = run(capsys, "deliveries", "redeliver-failed", "--dry-run")
    stack.settle()

    assert code == 0
    assert out.count("Would redeliver") == 2
    assert len(stack.github.deliveries) == sent
    assert stack.jobs("q-dry") == []


def test_deliveries_list(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    stack.post_query("q-list")
    deliveries = stack.settle()

    code, out, _ = run(capsys, "deliveries", "list")

    [created] = [d for d in deliveries if d.status_code == 201]
    [line] = [line for line in out.splitlines() if created.guid in line]
    assert code == 0
    assert all(d.guid in out for d in deliveries)
    assert " 201 " in line
    assert "job_requested" in line
    assert line.endswith("q-list")
    assert f"{len(deliveries)} delivery attempts since" in out


def test_deliveries_list_json(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    stack.post_query("q-json")
    deliveries = stack.settle()

    code, out, _ = run(capsys, "deliveries", "list", "--json")

    rows: list[dict[str, Any]] = json.loads(out)
    by_guid = {row["guid"]: row for row in rows}
    assert code == 0
    assert set(by_guid) == {d.guid for d in deliveries}
    assert {row["status_code"] for row in rows} == {d.status_code for d in deliveries}
    assert {row["query_id"] for row in rows} == {None, "q-json"}


def test_deliveries_since_too_long(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["deliveries", "list", "--since", "5d"])

    assert info.value.code == 2
    assert "3 days GitHub keeps deliveries" in capsys.readouterr().err


def test_resubmit_command(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    query = stack.post_query("q-resubmit")
    stack.settle()

    code, out, err = run(capsys, "resubmit", "q-resubmit")

    jobs = stack.jobs("q-resubmit")
    triggers = [job["trigger"] for job in stack.get_query("q-resubmit")["job_requests"]]
    assert code == 0, err
    assert f"Created job request {jobs[-1].id} at {query['sha']}" in out
    assert [job.body["sha"] for job in jobs] == [query["sha"], query["sha"]]
    assert triggers == ["tag_event", "resubmit"]


def test_resubmit_unknown_query(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "resubmit", "q-missing")

    assert code == 1
    assert "No query with id 'q-missing'" in err


def test_resubmit_commit_off_branch(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    query = stack.post_query("q-off")
    stack.settle()
    parent = (
        stack.github.repository("example-org/interactive-queries")
        .read_commit(query["sha"])
        .parents[0]
    )
    stack.github.push_ref("example-org/interactive-queries", "refs/heads/main", parent)
    stack.settle()

    code, _, err = run(capsys, "resubmit", "q-off")

    assert code == 1
    assert "is not on main" in err
    assert len(stack.jobs("q-off")) == 1


def test_reconcile_creates_missing_job_requests(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    """GitHub sends no tag events when one push creates many tags, or loses some."""
    queries = {q: stack.post_query_quietly(q) for q in ("q-lost-1", "q-lost-2")}
    stack.post_query("q-seen")
    stack.settle()

    code, out, err = run(capsys, "reconcile")
    again, _, _ = run(capsys, "reconcile")

    assert code == 0, err
    assert again == 0
    for query_id, query in queries.items():
        [job] = stack.jobs(query_id)
        assert job.body["sha"] == query["sha"]
        assert query_id in out
    assert len(stack.jobs("q-seen")) == 1
