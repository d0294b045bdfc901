"""Webhook deliveries: request checks, routing of ignored events, and the manifest."""

import io
import json
import re
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import responses
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

import handlers  # noqa: F401 - importing registers the handlers with the router
from github_app.app import create_app
from github_app.config import Settings
from github_app.webhooks import ALWAYS_DELIVERED, router, sign
from tests.conftest import REPO, WEBHOOK_SECRET

WEBHOOKS_PATH = "/api/github/webhooks"
GUID = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
APP_MANIFEST = Path(__file__).resolve().parents[1] / "app.yml"
ZERO_SHA = "0" * 40
REPOSITORY = {"full_name": REPO, "name": REPO.split("/")[1]}
#: One byte over GitHub's 25 MiB cap on webhook payloads.
TOO_LARGE = 25 * 1024 * 1024 + 1


def deliver(
    client: FlaskClient,
    event: str | None,
    payload: Any,
    *,
    guid: str | None = GUID,
    body: bytes | None = None,
    content_type: str = "application/json",
) -> TestResponse:
    """POST a delivery signed with the configured webhook secret."""
    data = json.dumps(payload).encode() if body is None else body
    headers = {"X-Hub-Signature-256": sign(data, WEBHOOK_SECRET)}
    if event is not None:
        headers["X-GitHub-Event"] = event
    if guid is not None:
        headers["X-GitHub-Delivery"] = guid

    return client.post(
        WEBHOOKS_PATH, data=data, headers=headers, content_type=content_type
    )


def stored(client: FlaskClient) -> list[Any]:
    return client.application.config["STORE"].deliveries()


def push_payload(**changes: Any) -> dict[str, Any]:
    payload = {
        "ref": "refs/heads/main",
        "before": "a" * 40,
        "after": "b" * 40,
        "created": False,
        "deleted": False,
        "forced": False,
        "commits": [],
        "repository": REPOSITORY,
    }
    payload.update(changes)
    return payload


# -- rejected before routing ------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "guid"), [(None, GUID), ("push", None), ("  ", GUID), ("push", "")]
)
def test_webhook_missing_header(
    client: FlaskClient, event: str | None, guid: str | None
) -> None:
    response = deliver(client, event, push_payload(), guid=guid)

    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "missing_header"
    assert stored(client) == []


@pytest.mark.parametrize("body", [b"not json", b"{", b"", b"\xff\xfe"])
def test_webhook_body_not_json(client: FlaskClient, body: bytes) -> None:
    response = deliver(client, "push", None, body=body)

    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_json"
    assert stored(client) == []


@pytest.mark.parametrize("body", [b"[]", b'"push"', b"42", b"null"])
def test_webhook_body_not_object(client: FlaskClient, body: bytes) -> None:
    response = deliver(client, "push", None, body=body)

    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_json"
    assert stored(client) == []


def test_webhook_form_encoded_unsupported(client: FlaskClient) -> None:
    body = b"payload=%7B%22zen%22%3A%22Keep+it+logically+awesome.%22%7D"

    response = deliver(
        client,
        "ping",
        None,
        body=body,
        content_type="application/x-www-form-urlencoded",
    )

    assert response.status_code == 415
    assert response.get_json()["error"]["code"] == "unsupported_media_type"
    assert stored(client) == []


def test_webhook_declared_length_too_large(client: FlaskClient) -> None:
    data = b"{}"

    response = client.post(
        WEBHOOKS_PATH,
        data=data,
        headers={
            "X-GitHub-Event": "ping",
            "X-GitHub-Delivery": GUID,
            "X-Hub-Signature-256": sign(data, WEBHOOK_SECRET),
        },
        content_type="application/json",
        environ_overrides={"CONTENT_LENGTH": str(TOO_LARGE)},
    )

    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "too_large"
    assert stored(client) == []


def test_webhook_streamed_body_too_large(client: FlaskClient) -> None:
    data = b" " * TOO_LARGE

    response = client.post(
        WEBHOOKS_PATH,
        input_stream=io.BytesIO(data),
        headers={
            "X-GitHub-Event": "ping",
            "X-GitHub-Delivery": GUID,
            "X-Hub-Signature-256": sign(data, WEBHOOK_SECRET),
        },
        content_type="application/json",
        # No Content-Length, as with a chunked request.
        environ_overrides={"CONTENT_LENGTH": "", "wsgi.input_terminated": True},
    )

    assert response.status_code == 413
    assert stored(client) == []


def test_webhook_bad_signature_not_stored(client: FlaskClient) -> None:
    data = json.dumps({"zen": "x"}).encode()

    response = client.post(
        WEBHOOKS_PATH,
        data=data,
        headers={
            "X-GitHub-Event": "ping",
            "X-GitHub-Delivery": GUID,
            "X-Hub-Signature-256": sign(data, "another-secret"),
        },
        content_type="application/json",
    )

    assert response.status_code == 401
    assert stored(client) == []


@pytest.mark.parametrize(
    "header", [None, "", "sha1=" + "0" * 40, "sha256=", "sha256=not-hex"]
)
def test_webhook_signature_missing_or_malformed(
    client: FlaskClient, header: str | None
) -> None:
    headers = {"X-GitHub-Event": "ping", "X-GitHub-Delivery": GUID}
    if header is not None:
        headers["X-Hub-Signature-256"] = header

    response = client.post(
        WEBHOOKS_PATH, data=b"{}", headers=headers, content_type="application/json"
    )

    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "bad_signature"
    assert stored(client) == []


def test_webhook_signature_covers_received_bytes(client: FlaskClient) -> None:
    """Non-ASCII text and escapes verify as sent; the same JSON re-encoded does not."""
    received = (
        '{"zen":"Caf\\u00e9 na\u00efve \\u003cb\\u003e \\/ \\"quoted\\"",'
        '"hook_id":1,"sender":{"login":"zo\u00eb"}}'
    ).encode()
    reencoded = json.dumps(json.loads(received)).encode()
    headers = {
        "X-GitHub-Event": "ping",
        "X-Hub-Signature-256": sign(received, WEBHOOK_SECRET),
    }

    accepted = client.post(
        WEBHOOKS_PATH,
        data=received,
        headers={**headers, "X-GitHub-Delivery": "guid-as-received"},
        content_type="application/json",
    )
    rejected = client.post(
        WEBHOOKS_PATH,
        data=reencoded,
        headers={**headers, "X-GitHub-Delivery": "guid-reencoded"},
        content_type="application/json",
    )

    assert reencoded != received
    assert accepted.status_code == 200
    assert rejected.status_code == 401
    assert [delivery.guid for delivery in stored(client)] == ["guid-as-received"]


@pytest.mark.parametrize(
    ("event", "guid"),
    [("push", "not a guid"), ("push", "g" * 65), ("Push Event", GUID), ("x" * 51, GUID)],
)
def test_webhook_invalid_header(client: FlaskClient, event: str, guid: str) -> None:
    response = deliver(client, event, push_payload(), guid=guid)

    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_header"
    assert stored(client) == []


def test_webhook_content_type_checked_after_signature(client: FlaskClient) -> None:
    response = client.post(
        WEBHOOKS_PATH,
        data=b"{}",
        headers={"X-GitHub-Event": "ping", "X-GitHub-Delivery": GUID},
        content_type="text/plain",
    )

    assert response.status_code == 401


# -- one attempt at a time ------------------------------------------------------------


def test_webhook_same_guid_in_progress(client: FlaskClient) -> None:
    store = client.application.config["STORE"]
    assert store.claim_delivery(GUID, stale_after=timedelta(minutes=1))

    busy = deliver(client, "ping", {"zen": "z"})
    store.release_delivery(GUID)
    free = deliver(client, "ping", {"zen": "z"})

    assert busy.status_code == 409
    assert busy.get_json()["outcome"] == "in_progress"
    assert GUID in busy.get_json()["message"]
    assert free.status_code == 200
    assert [d.status_code for d in stored(client)] == [409, 200]


def test_webhook_stale_claim_taken_over(client: FlaskClient) -> None:
    store = client.application.config["STORE"]
    assert store.claim_delivery(GUID, stale_after=timedelta(minutes=1))

    taken = store.claim_delivery(GUID, stale_after=timedelta(seconds=-1))

    assert taken is True


def test_webhook_claim_released_after_answer(client: FlaskClient) -> None:
    deliver(client, "ping", {"zen": "z"})

    store = client.application.config["STORE"]
    assert store.claim_delivery(GUID, stale_after=timedelta(minutes=1))


def test_webhook_slow_handler_answered_503(
    settings: Settings, mocked: responses.RequestsMock
) -> None:
    app = create_app(settings, {"WEBHOOK_TIME_BUDGET": 0.3})
    client = app.test_client()
    release = threading.Event()

    def hang(request: Any) -> Any:
        release.wait(10)
        return (503, {}, "{}")

    mocked.add_callback("GET", re.compile(".*"), callback=hang)
    with app.app_context():
        app.extensions["query_service"].store.create_query(
            id="q-slow",
            repo=REPO,
            branch="main",
            workspace="w",
            backend="tpp",
            created_by="jdoe",
            fingerprint="f",
            request={},
            files={},
        )
        app.extensions["query_service"].store.advance_query(
            "q-slow", "committed", commit_sha="c" * 40
        )

    response = deliver(
        client, "create", {"ref": "q-slow", "ref_type": "tag", "repository": REPOSITORY}
    )
    release.set()
    store = app.config["STORE"]
    deadline = time.monotonic() + 10
    while not store.claim_delivery(GUID, stale_after=timedelta(minutes=1)):
        assert time.monotonic() < deadline, "the late handler never finished"
        time.sleep(0.05)

    assert response.status_code == 503
    assert response.get_json()["outcome"] == "timed_out"
    assert "Redeliver" in response.get_json()["message"]
    assert [d.status_code for d in stored(client)] == [503]


# -- routed and ignored ---------------------------------------------------------------


def test_webhook_ping_answered(client: FlaskClient) -> None:
    payload = {"zen": "Keep it logically awesome.", "hook_id": 1}

    response = deliver(client, "ping", payload)

    assert response.status_code == 200
    assert response.get_json()["outcome"] == "pong"


def test_webhook_unhandled_event_ignored_and_stored(client: FlaskClient) -> None:
    response = deliver(client, "issues", {"action": "opened", "repository": REPOSITORY})

    [delivery] = stored(client)
    assert response.status_code == 202
    assert response.get_json()["outcome"] == "ignored"
    assert "issues" in response.get_json()["message"]
    assert delivery.guid == GUID
    assert delivery.event == "issues"
    assert delivery.action == "opened"
    assert delivery.repo == REPO
    assert delivery.status_code == 202
    assert delivery.outcome == "ignored"


def test_webhook_json_with_charset_accepted(client: FlaskClient) -> None:
    response = deliver(
        client,
        "issues",
        {"action": "opened"},
        content_type="application/json; charset=utf-8",
    )

    assert response.status_code == 202


def test_webhook_push_other_repository_ignored(
    client: FlaskClient, mocked: responses.RequestsMock
) -> None:
    payload = push_payload(repository={"full_name": "example-org/other-repo"})

    response = deliver(client, "push", payload)

    assert response.status_code == 202
    assert "example-org/other-repo" in response.get_json()["message"]
    assert len(mocked.calls) == 0


@pytest.mark.parametrize(
    "changes",
    [
        {"after": ZERO_SHA},
        {"deleted": True},
        {"ref": "refs/tags/query-1", "after": ZERO_SHA, "deleted": True},
    ],
)
def test_webhook_deleted_ref_ignored_without_calls(
    client: FlaskClient, mocked: responses.RequestsMock, changes: dict[str, Any]
) -> None:
    response = deliver(client, "push", push_payload(**changes))

    assert response.status_code == 202
    assert "deleted" in response.get_json()["message"]
    assert len(mocked.calls) == 0


@pytest.mark.parametrize(
    ("event", "payload"),
    [
        ("push", {"ref": "refs/tags/q-1", "after": "b" * 40}),
        ("create", {"ref": "q-1", "ref_type": "tag"}),
    ],
)
def test_webhook_without_repository_ignored(
    client: FlaskClient,
    mocked: responses.RequestsMock,
    event: str,
    payload: dict[str, Any],
) -> None:
    response = deliver(client, event, payload)

    assert response.status_code == 202
    assert response.get_json()["message"] == "The delivery names no repository."
    assert len(mocked.calls) == 0


def test_webhook_push_other_branch_ignored(
    client: FlaskClient, mocked: responses.RequestsMock
) -> None:
    response = deliver(client, "push", push_payload(ref="refs/heads/feature"))

    assert response.status_code == 202
    assert "refs/heads/feature" in response.get_json()["message"]
    assert len(mocked.calls) == 0


def test_webhook_create_branch_ignored(
    client: FlaskClient, mocked: responses.RequestsMock
) -> None:
    payload = {"ref": "feature", "ref_type": "branch", "repository": REPOSITORY}

    response = deliver(client, "create", payload)

    assert response.status_code == 202
    assert response.get_json()["outcome"] == "ignored"
    assert len(mocked.calls) == 0


def test_webhook_push_unknown_tag_ignored(
    client: FlaskClient, mocked: responses.RequestsMock
) -> None:
    payload = push_payload(ref="refs/tags/not-a-query")

    response = deliver(client, "push", payload)

    body = response.get_json()
    assert response.status_code == 202
    assert body["outcome"] == "ignored"
    assert "not-a-query" in body["message"]
    assert len(mocked.calls) == 0


def test_webhook_create_unknown_tag_ignored(
    client: FlaskClient, mocked: responses.RequestsMock
) -> None:
    payload = {"ref": "not-a-query", "ref_type": "tag", "repository": REPOSITORY}

    response = deliver(client, "create", payload)

    assert response.status_code == 202
    assert "not-a-query" in response.get_json()["message"]
    assert len(mocked.calls) == 0


def test_webhook_ignored_deliveries_stored(client: FlaskClient) -> None:
    deliver(client, "push", push_payload(ref="refs/heads/feature"), guid="guid-1")
    deliver(client, "push", push_payload(ref="refs/tags/unknown"), guid="guid-2")

    deliveries = stored(client)

    assert [delivery.guid for delivery in deliveries] == ["guid-1", "guid-2"]
    assert [delivery.status_code for delivery in deliveries] == [202, 202]


# -- the App manifest -------------------------------------------------------------


def load_manifest() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml", reason="PyYAML is needed to parse app.yml")
    return yaml.safe_load(APP_MANIFEST.read_text())


def test_manifest_events_match_handlers() -> None:
    manifest = load_manifest()

    assert set(manifest["default_events"]) == router.events - ALWAYS_DELIVERED
    assert len(manifest["default_events"]) == len(set(manifest["default_events"]))


def test_manifest_permissions_minimal() -> None:
    manifest = load_manifest()

    assert manifest["default_permissions"] == {"contents": "write", "metadata": "read"}


@pytest.mark.parametrize(
    ("event", "payload", "status"),
    [
        (
            "push",
            {
                "ref": "refs/heads/main",
                "after": "b" * 40,
                "forced": True,
                "pusher": "mallory",
                "commits": "x",
                "repository": {"full_name": "example-org/interactive-queries"},
            },
            # Fields the branch rule does not need are read leniently.
            200,
        ),
        ("installation", {"action": "created", "installation": "x"}, 400),
    ],
)
def test_malformed_signed_payload_is_no_500(
    client: FlaskClient, event: str, payload: dict[str, Any], status: int
) -> None:
    body = json.dumps(payload).encode()

    response = client.post(
        "/api/github/webhooks",
        data=body,
        headers={
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": "6a1f0c9e-0000-4000-8000-00000000beef",
            "X-Hub-Signature-256": sign(body, WEBHOOK_SECRET),
            "Content-Type": "application/json",
        },
    )

    assert response.status_code == status


def test_deeply_nested_payload_is_400(client: FlaskClient) -> None:
    body = b"[" * 50_000 + b"]" * 50_000

    response = client.post(
        "/api/github/webhooks",
        data=body,
        headers={
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": "6a1f0c9e-0000-4000-8000-00000000cafe",
            "X-Hub-Signature-256": sign(body, WEBHOOK_SECRET),
            "Content-Type": "application/json",
        },
    )

    assert response.status_code == 400
