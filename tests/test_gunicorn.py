"""The app under gunicorn with gunicorn.conf.py: JSON logs and merged metrics."""

import json
from datetime import timedelta
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from sandbox.stack import running_stack
from tests.test_api import QUERY
from tests.test_telemetry import find_secrets, key_lines

WORKERS = 3
SCRAPES = 8


def metric_total(page: str, name: str) -> float:
    """Return the sum of every sample of counter ``name`` on a /metrics page."""
    for family in text_string_to_metric_families(page):
        if family.name == name:
            return sum(s.value for s in family.samples if s.name == f"{name}_total")

    return 0.0


def test_workers_share_metrics_and_log_json(tmp_path: Path) -> None:
    with running_stack(tmp_path / "stack", workers=WORKERS, threads=2) as stack:
        answer = stack.post_query(QUERY)
        assert stack.wait_for_job_requests(1)
        stack.github.wait_for_deliveries()
        deliveries = len(stack.github.deliveries)
        # Several connections, so the scrapes land on different workers.
        pages = [
            requests.get(f"{stack.app_url}/metrics", timeout=10).text
            for _ in range(SCRAPES)
        ]
        secrets = {
            "webhook secret": stack.github.webhook_secret,
            "API token": stack.api_token,
            "Job Server token": stack.job_server.token,
            **key_lines((tmp_path / "stack" / "app-key.pem").read_text()),
        }
    log = stack.log_path.read_text()

    events = [json.loads(line) for line in log.splitlines() if line.strip()]
    served = [e for e in events if e["event"] == "Served request"]
    handled = [e for e in events if e["event"] == "Handled request"]
    booted = {e["event"] for e in events if e.get("logger") == "gunicorn.error"}
    assert answer.status_code == 201
    assert {metric_total(page, "github_app_webhook_deliveries") for page in pages} == {
        deliveries
    }
    assert {
        metric_total(page, "github_app_job_requests_created") for page in pages
    } == {1}
    assert any(event.startswith("Booting worker") for event in booted)
    assert {"POST"} <= {e["method"] for e in served}
    assert all(isinstance(e["duration_ms"], float) for e in served)
    assert any(e.get("sha") == answer.json()["sha"] for e in handled)
    assert find_secrets(log, secrets) == []


def test_access_log_scrubs_secret_shapes() -> None:
    """A token sent where it does not belong (here the user agent) is scrubbed."""
    from types import SimpleNamespace

    from gunicorn.config import Config

    from github_app.access_log import JsonLogger

    config = Config()
    config.set("accesslog", "-")
    logger = JsonLogger(config)
    lines: list[str] = []
    logger.access_log.info = lines.append  # type: ignore[method-assign]
    token = "ghs_" + "a" * 36
    request = SimpleNamespace(headers=[("USER-AGENT", token)])
    response = SimpleNamespace(status_code=200, sent=2)
    environ = {"REMOTE_ADDR": "127.0.0.1", "REQUEST_METHOD": "GET", "PATH_INFO": "/"}

    logger.access(response, request, environ, timedelta(milliseconds=5))

    record = json.loads(lines[0])
    assert record["user_agent"] == "[REDACTED]"
    assert record["status_code"] == 200
    assert record["duration_ms"] == 5.0
