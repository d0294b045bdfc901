"""Request logs, secret scrubbing and metrics, checked on the real query flow."""

import json
import re
from typing import Any

import pytest
import requests
import responses
from prometheus_client import REGISTRY

from github_app import metrics
from github_app.github import GitHubClient, GitHubUnavailableError
from github_app.logs import REDACTED, SecretScrubber, configure_logging
from tests.conftest import API_TOKEN, WEBHOOK_SECRET
from tests.test_api import QUERY
from tests.test_end_to_end import (  # noqa: F401 - fixtures
    AUTH,
    Stack,
    app_settings_changes,
    stack,
)
from tests.test_github_client import (  # noqa: F401 - fixtures
    HEAD_OK,
    HEAD_URL,
    INSTALLATION_ID,
    REPO,
    add_sequence,
    authenticated,
    fake_time,
    github,
    mock,
)

JSON_DEBUG = {"log_format": "json", "log_level": "debug"}
#: Shapes of credentials that must never be logged, whatever their value.
JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
INSTALLATION_TOKEN = re.compile(r"ghs_[A-Za-z0-9]{16,}")
PEM_HEADER = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")


def find_secrets(text: str, secrets: dict[str, str]) -> list[str]:
    """Return the names of the secrets that appear in ``text``."""
    found = [name for name, value in secrets.items() if value in text]
    for name, shape in (
        ("JWT", JWT),
        ("installation token", INSTALLATION_TOKEN),
        ("private key", PEM_HEADER),
    ):
        if shape.search(text):
            found.append(name)

    return found


def key_lines(private_key_pem: str) -> dict[str, str]:
    """Return each base64 line of a PEM key, named by its position."""
    lines = [line for line in private_key_pem.splitlines() if "-----" not in line]
    return {f"private key line {number}": line for number, line in enumerate(lines)}


def run_whole_flow(stack: Stack) -> None:  # noqa: F811
    """Drive every route: a query, both tag events, a redelivery, a resubmit,
    a bad signature, a bad token, and a read of the query."""
    stack.post_query(QUERY)
    stack.wait_for_job_requests(QUERY["id"])
    succeeded = next(d for d in stack.github.deliveries if d.status_code == 201)
    stack.github.redeliver(succeeded.id)
    stack.wait_for_job_requests(QUERY["id"], count=2)
    requests.post(
        f"{stack.app.url}/api/v1/queries/{QUERY['id']}/resubmit",
        headers=AUTH,
        timeout=30,
    )
    stack.github.send_delivery("ping", {"zen": "hi"}, secret="not-the-secret")
    requests.get(
        f"{stack.app.url}/api/v1/queries/{QUERY['id']}",
        headers={"Authorization": "Bearer wrong-token"},
        timeout=10,
    )
    stack.get_query(QUERY["id"])
    stack.github.wait_for_deliveries()


def json_events(text: str) -> list[dict[str, Any]]:
    events = []
    for line in text.splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    return events


class TestSecretScrubber:
    def test_known_value_replaced(self) -> None:
        scrub = SecretScrubber(["s3cret-webhook-value"])

        assert (
            scrub('{"x": "a s3cret-webhook-value b"}') == f'{{"x": "a {REDACTED} b"}}'
        )

    @pytest.mark.parametrize(
        "line",
        [
            "token ghs_abcdefghijklmnopqrstuvwxyz0123456789 minted",
            "jwt eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiIxIn0.c2lnbmF0dXJl sent",
            "Authorization: Bearer abc123def456",
            '"-----BEGIN RSA PRIVATE KEY-----\\nMIIB\\n-----END RSA PRIVATE KEY-----"',
        ],
    )
    def test_secret_shapes_replaced(self, line: str) -> None:
        scrubbed = SecretScrubber()(line)

        assert REDACTED in scrubbed
        assert find_secrets(scrubbed, {}) == []

    def test_key_lines_replaced(self, private_key_pem: str) -> None:
        scrub = SecretScrubber([private_key_pem])
        lines = key_lines(private_key_pem)

        scrubbed = scrub(" ".join(lines.values()))

        assert find_secrets(scrubbed, lines) == []

    def test_short_values_left_alone(self) -> None:
        assert SecretScrubber(["abc"])("abc abc") == "abc abc"


def test_console_format_is_readable(capsys: pytest.CaptureFixture[str]) -> None:
    import structlog

    configure_logging("console", "info")
    structlog.get_logger("test").info("Created job request", query_id="q1")

    line = capsys.readouterr().out.strip()
    assert not line.startswith("{")
    assert "Created job request" in line
    assert "query_id=q1" in line


@pytest.mark.parametrize("app_settings_changes", [JSON_DEBUG], indirect=True)
def test_logs_of_whole_flow_hold_no_secret(
    stack: Stack,  # noqa: F811
    private_key_pem: str,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Every line written by the app and the stand-ins, at debug level."""
    secrets = {
        "webhook secret": WEBHOOK_SECRET,
        "API token": API_TOKEN,
        "Job Server token": stack.settings.job_server_token,
        **key_lines(private_key_pem),
    }

    run_whole_flow(stack)

    out, err = capfd.readouterr()
    logged = out + err
    events = json_events(out)
    assert len(events) > 20
    assert find_secrets(logged, secrets) == []


@pytest.mark.parametrize("app_settings_changes", [JSON_DEBUG], indirect=True)
def test_flow_secret_check_can_fail(
    stack: Stack,  # noqa: F811
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Guards the test above: the same check finds a token that is printed."""
    stack.post_query(QUERY)
    stack.wait_for_job_requests(QUERY["id"])
    print(f"Authorization: token {stack.github.create_installation_token()}")

    out, err = capfd.readouterr()

    assert find_secrets(out + err, {}) == ["installation token"]


@pytest.mark.parametrize("app_settings_changes", [JSON_DEBUG], indirect=True)
def test_one_event_per_request_and_delivery(
    stack: Stack,  # noqa: F811
    capfd: pytest.CaptureFixture[str],
) -> None:
    stack.post_query(QUERY)
    stack.wait_for_job_requests(QUERY["id"])

    events = json_events(capfd.readouterr().out)
    requests_handled = [e for e in events if e["event"] == "Handled request"]
    deliveries = [e for e in requests_handled if e.get("delivery_id")]
    created = next(e for e in deliveries if e["outcome"] == "job_requested")
    posted = next(e for e in requests_handled if e["path"] == "/api/v1/queries")
    assert {d["delivery_id"] for d in deliveries} == {
        d.guid for d in stack.github.deliveries
    }
    assert created["github_event"] in ("push", "create")
    assert created["query_id"] == QUERY["id"]
    assert len(created["sha"]) == 40
    assert created["duration_ms"] >= 0
    assert created["request_id"]
    assert posted["method"] == "POST"
    assert posted["query_id"] == QUERY["id"]
    assert posted["sha"] == created["sha"]
    assert posted["outcome"] == "tagged"
    assert posted["status_code"] == 201
    handled = [e for e in events if e["event"] == "Handled delivery"]
    delivered = next(e for e in handled if e["outcome"] == "job_requested")
    assert delivered["delivery_id"] == created["delivery_id"]
    assert delivered["github_event"] == created["github_event"]
    assert delivered["query_id"] == QUERY["id"]
    assert delivered["sha"] == created["sha"]
    assert delivered["duration_ms"] >= 0


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_metrics_count_the_flow(stack: Stack) -> None:  # noqa: F811
    trees = "POST /repos/{owner}/{repo}/git/trees"
    before = {
        "trees": sample("github_app_github_calls_total", endpoint=trees, status="2xx"),
        "jobs": sample("github_app_job_requests_created_total", trigger="tag_event"),
        "commits": sample("github_app_query_commit_seconds_count"),
        "bad": sample(
            "github_app_webhook_deliveries_total",
            event="unverified",
            outcome="bad_signature",
        ),
    }

    stack.post_query(QUERY)
    stack.wait_for_job_requests(QUERY["id"])
    stack.github.send_delivery("ping", {"zen": "hi"}, secret="not-the-secret")
    page = requests.get(f"{stack.app.url}/metrics", timeout=10)

    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/plain")
    assert "github_app_webhook_deliveries_total" in page.text
    assert sample("github_app_github_calls_total", endpoint=trees, status="2xx") == (
        before["trees"] + 1
    )
    assert sample("github_app_job_requests_created_total", trigger="tag_event") == (
        before["jobs"] + 1
    )
    assert sample("github_app_query_commit_seconds_count") == before["commits"] + 1
    assert sample(
        "github_app_webhook_deliveries_total",
        event="unverified",
        outcome="bad_signature",
    ) == (before["bad"] + 1)


def test_rate_limit_gauge_follows_headers() -> None:
    metrics.observe_rate_limit("4242", {"X-RateLimit-Remaining": "4321"})
    metrics.observe_rate_limit("4242", {"Content-Type": "application/json"})

    assert sample("github_app_github_rate_limit_remaining", installation="4242") == 4321


@pytest.mark.parametrize(
    ("verb", "path", "label"),
    [
        (
            "GET",
            "/repos/o/r/git/ref/heads/main",
            "GET /repos/{owner}/{repo}/git/ref/heads/{name}",
        ),
        (
            "PATCH",
            "/repos/o/r/git/refs/heads/main",
            "PATCH /repos/{owner}/{repo}/git/refs/heads/{name}",
        ),
        (
            "GET",
            "/repos/o/r/git/tags/" + "a" * 40,
            "GET /repos/{owner}/{repo}/git/tags/{sha}",
        ),
        (
            "GET",
            "/repos/o/r/compare/main...abc",
            "GET /repos/{owner}/{repo}/compare/{basehead}",
        ),
        (
            "POST",
            "/app/installations/77/access_tokens",
            "POST /app/installations/{installation_id}/access_tokens",
        ),
        ("GET", "/app/hook/deliveries?per_page=100", "GET /app/hook/deliveries"),
    ],
)
def test_endpoint_label_is_a_template(verb: str, path: str, label: str) -> None:
    assert metrics.endpoint_label(verb, path) == label


class TestGitHubCallMetrics:
    """The client counts every attempt and keeps GitHub's rate-limit report."""

    HEAD = "GET /repos/{owner}/{repo}/git/ref/heads/{name}"

    def test_success_records_rate_limit(
        self,
        github: GitHubClient,  # noqa: F811
        mock: responses.RequestsMock,  # noqa: F811
    ) -> None:
        authenticated(mock)
        add_sequence(
            mock, "GET", HEAD_URL, [(*HEAD_OK, {"X-RateLimit-Remaining": "4321"})]
        )
        before = sample(
            "github_app_github_calls_total", endpoint=self.HEAD, status="2xx"
        )

        github.get_branch_head(REPO, "main")

        after = sample(
            "github_app_github_calls_total", endpoint=self.HEAD, status="2xx"
        )
        remaining = sample(
            "github_app_github_rate_limit_remaining", installation=str(INSTALLATION_ID)
        )
        assert after == before + 1
        assert remaining == 4321

    def test_each_failed_attempt_counted(
        self,
        github: GitHubClient,  # noqa: F811
        mock: responses.RequestsMock,  # noqa: F811
    ) -> None:
        authenticated(mock)
        add_sequence(mock, "GET", HEAD_URL, [(502, {"message": "Bad"}), HEAD_OK])
        before = sample(
            "github_app_github_calls_total", endpoint=self.HEAD, status="502"
        )

        github.get_branch_head(REPO, "main")

        after = sample(
            "github_app_github_calls_total", endpoint=self.HEAD, status="502"
        )
        assert after == before + 1

    def test_unreachable_counted(
        self,
        github: GitHubClient,  # noqa: F811
        mock: responses.RequestsMock,  # noqa: F811
    ) -> None:
        authenticated(mock)
        add_sequence(mock, "GET", HEAD_URL, [requests.ConnectionError("refused")])
        label = {"endpoint": self.HEAD, "status": "unreachable"}
        before = sample("github_app_github_calls_total", **label)

        with pytest.raises(GitHubUnavailableError):
            github.get_branch_head(REPO, "main")

        assert sample("github_app_github_calls_total", **label) > before
