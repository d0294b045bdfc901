"""The query API: authentication, validation, replays, conflicts."""

import copy
from typing import Any

import pytest
import responses
from flask.testing import FlaskClient

from tests.conftest import API_TOKEN, REPO
from tests.github_mocks import mock_github

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}

QUERY: dict[str, Any] = {
    "id": "01HV3Z8Q4J6Y9K2M5N7P0R1S2T",
    "repo": REPO,
    "workspace": "interactive-queries",
    "backend": "tpp",
    "requested_by": {"username": "jdoe", "name": "Jane Doe", "email": "jane@example.org"},
    "analysis": {
        "template": "event_counts",
        "inputs": {"codelist_1": "opensafely/asthma-diagnosis/2020-04-15"},
    },
}


def post(client: FlaskClient, body: Any, headers: dict[str, str] | None = None) -> Any:
    return client.post("/api/v1/queries", json=body, headers=headers or AUTH)


def test_create_query_commits_and_tags(
    client: FlaskClient, mocked: responses.RequestsMock
) -> None:
    fake = mock_github(mocked)

    response = post(client, QUERY)

    assert response.status_code == 201
    body = response.get_json()
    assert body["state"] == "tagged"
    assert body["sha"] == fake.bodies["update_ref"][0]["sha"]
    assert body["tag"] == QUERY["id"]
    assert body["branch"] == "main"
    assert body["job_requests"] == []
    assert fake.bodies["update_ref"][0]["force"] is False
    assert fake.bodies["create_ref"][0]["ref"] == f"refs/tags/{QUERY['id']}"


def test_create_query_commit_has_author_and_trailers(
    client: FlaskClient, mocked: responses.RequestsMock
) -> None:
    fake = mock_github(mocked)

    post(client, QUERY)

    commit = fake.bodies["create_commit"][0]
    assert commit["author"]["name"] == "Jane Doe"
    assert commit["author"]["email"] == "jane@example.org"
    assert commit["committer"]["name"] == "interactive-query-app[bot]"
    assert commit["parents"] == ["a" * 40]
    assert f"\n\nQuery-Id: {QUERY['id']}\n" in commit["message"]
    assert "Requested-By: Jane Doe <jane@example.org>\n" in commit["message"]


def test_replay_returns_same_query_without_new_commit(
    client: FlaskClient, mocked: responses.RequestsMock
) -> None:
    fake = mock_github(mocked)
    first = post(client, QUERY).get_json()

    replay = post(client, QUERY)

    assert replay.status_code == 200
    assert replay.get_json() == first
    assert fake.calls.count("create_commit") == 1
    assert fake.calls.count("create_tag") == 1


def test_same_id_different_body_is_conflict(
    client: FlaskClient, mocked: responses.RequestsMock
) -> None:
    mock_github(mocked)
    post(client, QUERY)
    other = copy.deepcopy(QUERY)
    other["analysis"]["inputs"]["codelist_1"] = "opensafely/other/2020-01-01"

    response = post(client, other)

    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "conflict"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"id": "bad id"}, "id"),
        ({"id": "x.lock"}, "id"),
        ({"id": "a..b"}, "id"),
        ({"repo": "someone/else"}, "repo"),
        ({"workspace": None}, "workspace"),
        ({"extra": 1}, "(body)"),
        ({"analysis": {"template": "nope", "inputs": {}}}, "analysis.template"),
        (
            {"analysis": {"template": "event_counts", "inputs": {"codelist_1": "x"}}},
            "analysis.inputs.codelist_1",
        ),
        (
            {"requested_by": {"username": "j", "name": "J\n<x>", "email": "j@e.org"}},
            "requested_by.name",
        ),
    ],
)
def test_invalid_query_is_rejected_naming_field(
    client: FlaskClient, mocked: responses.RequestsMock, change: dict[str, Any], field: str
) -> None:
    fake = mock_github(mocked)

    response = post(client, {**QUERY, **change})

    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_request"
    assert field in [detail["field"] for detail in error["details"]]
    assert fake.calls == []


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {API_TOKEN}"}],
)
def test_bad_token_is_unauthorized(client: FlaskClient, headers: dict[str, str]) -> None:
    response = client.post("/api/v1/queries", json=QUERY, headers=headers)

    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"


def test_get_requires_token(client: FlaskClient) -> None:
    assert client.get(f"/api/v1/queries/{QUERY['id']}").status_code == 401


def test_not_json_is_unsupported(client: FlaskClient) -> None:
    response = client.post(
        "/api/v1/queries", data="id=1", headers={**AUTH, "Content-Type": "text/plain"}
    )

    assert response.status_code == 415


def test_malformed_json_is_bad_request(client: FlaskClient) -> None:
    response = client.post(
        "/api/v1/queries", data="{", headers={**AUTH, "Content-Type": "application/json"}
    )

    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_json"


def test_too_large_is_rejected(client: FlaskClient) -> None:
    response = client.post(
        "/api/v1/queries",
        data="[" + "1," * 200_000 + "1]",
        headers={**AUTH, "Content-Type": "application/json"},
    )

    assert response.status_code == 413


def test_get_unknown_query_is_not_found(client: FlaskClient) -> None:
    response = client.get("/api/v1/queries/unknown", headers=AUTH)

    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_get_returns_stored_query(
    client: FlaskClient, mocked: responses.RequestsMock
) -> None:
    mock_github(mocked)
    created = post(client, QUERY).get_json()

    response = client.get(f"/api/v1/queries/{QUERY['id']}", headers=AUTH)

    assert response.status_code == 200
    assert response.get_json() == created


def test_github_unreachable_keeps_query_and_replay_resumes(
    client: FlaskClient, mocked: responses.RequestsMock
) -> None:
    # Nothing is registered yet, so every GitHub call fails to connect.
    first = post(client, QUERY)
    assert first.status_code == 503
    assert first.get_json()["error"]["code"] == "unavailable"
    stored = client.get(f"/api/v1/queries/{QUERY['id']}", headers=AUTH).get_json()
    assert stored["state"] == "received"
    fake = mock_github(mocked)

    replay = post(client, QUERY)

    assert replay.status_code == 200
    assert replay.get_json()["state"] == "tagged"
    assert fake.calls.count("create_commit") == 1


@pytest.mark.parametrize(
    "field", ["id", "workspace", "backend", "username", "email", "name"]
)
def test_trailing_newline_is_rejected(client: FlaskClient, field: str) -> None:
    body = copy.deepcopy(QUERY)
    if field in body:
        body[field] += "\n"
    else:
        body["requested_by"][field] += "\n"

    response = post(client, body)

    assert response.status_code == 400
    fields = [detail["field"] for detail in response.get_json()["error"]["details"]]
    assert any(name.endswith(field) for name in fields)
