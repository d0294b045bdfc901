"""Prometheus metrics: what the app counts, and their exposition for /metrics.

Under gunicorn every worker process counts on its own. ``gunicorn.conf.py`` sets
``PROMETHEUS_MULTIPROC_DIR``, so prometheus-client keeps the values in files
there, and ``render`` merges all workers' files into one response. Without that
variable (tests, ``flask run``) the process's own registry is served.
https://prometheus.github.io/client_python/multiprocess/
"""

import os
import re
from collections.abc import Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

DELIVERIES = Counter(
    "github_app_webhook_deliveries_total",
    "Webhook deliveries answered, by event and outcome (the response's outcome, "
    "or the error code of a delivery rejected before it was handled).",
    ["event", "outcome"],
)
QUERY_COMMIT_SECONDS = Histogram(
    "github_app_query_commit_seconds",
    "Seconds from receiving a new query to answering it with its tagged commit.",
    buckets=(0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0),
)
GITHUB_CALLS = Counter(
    "github_app_github_calls_total",
    "GitHub REST calls, by endpoint and status: the status code of an error "
    "response, 2xx for a success, or unreachable.",
    ["endpoint", "status"],
)
GITHUB_RATE_LIMIT_REMAINING = Gauge(
    "github_app_github_rate_limit_remaining",
    "Requests left in GitHub's current rate-limit window, as last reported.",
    ["installation"],
    multiprocess_mode="mostrecent",
)
JOB_REQUESTS_CREATED = Counter(
    "github_app_job_requests_created_total",
    "Job requests created in Job Server, by what triggered them.",
    ["trigger"],
)

#: Path segments that vary per call, replaced so endpoints stay a small set.
_ENDPOINT_PATTERNS = (
    (re.compile(r"^/repos/[^/]+/[^/]+"), "/repos/{owner}/{repo}"),
    (re.compile(r"/git/(refs?)/(heads|tags)/.+$"), r"/git/\1/\2/{name}"),
    (re.compile(r"/git/(tags|commits|trees)/[0-9a-f]{40}$"), r"/git/\1/{sha}"),
    (re.compile(r"/compare/.+$"), "/compare/{basehead}"),
    (re.compile(r"/installations/\d+"), "/installations/{installation_id}"),
    (re.compile(r"/deliveries/\d+"), "/deliveries/{delivery_id}"),
)


def endpoint_label(verb: str, path: str) -> str:
    """Return ``VERB /path/{template}`` for a call to ``path``."""
    path = path.split("?", 1)[0]
    for pattern, replacement in _ENDPOINT_PATTERNS:
        path = pattern.sub(replacement, path)

    return f"{verb.upper()} {path}"


def observe_github_call(endpoint: str, status: int | str) -> None:
    """Count one GitHub call with its status code, ``2xx`` or ``unreachable``."""
    GITHUB_CALLS.labels(endpoint=endpoint, status=str(status)).inc()


def observe_rate_limit(installation: str, headers: Mapping[str, Any] | None) -> None:
    """Record ``X-RateLimit-Remaining`` from a GitHub response's headers, if sent."""
    lowered = {str(key).lower(): value for key, value in (headers or {}).items()}
    remaining = lowered.get("x-ratelimit-remaining")
    if remaining is None:
        return

    try:
        GITHUB_RATE_LIMIT_REMAINING.labels(installation=installation).set(
            float(remaining)
        )
    except ValueError:
        return


def render() -> tuple[bytes, str]:
    """Return the exposition of every metric and its content type."""
    # prometheus-client itself switches to files when this variable is set.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
