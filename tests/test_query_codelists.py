"""Submitting a query downloads its codelists before anything is stored."""

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
import responses
from flask.testing import FlaskClient

from github_app.app import create_app
from github_app.config import Settings
from sandbox.opencodelists import OpenCodelistsSandbox
from sandbox.servers import RunningServer, serve
from tests.conftest import with_settings
from tests.github_mocks import mock_github
from tests.test_api import AUTH, QUERY, post
from tests.test_codelists import DEAD_URL

CODELIST_ID = QUERY["analysis"]["inputs"]["codelist_1"]


def query_with(**inputs: Any) -> dict[str, Any]:
    body = copy.deepcopy(QUERY)
    body["analysis"]["inputs"].update(inputs)
    return body


@pytest.fixture
def opencodelists() -> OpenCodelistsSandbox:
    return OpenCodelistsSandbox()


@pytest.fixture
def opencodelists_server(
    opencodelists: OpenCodelistsSandbox, mocked: responses.RequestsMock
) -> Iterator[RunningServer]:
    with serve(opencodelists.wsgi_app) as server:
        mocked.add_passthru(server.url)
        yield server


def client_for(settings: Settings, url: str) -> FlaskClient:
    app = create_app(with_settings(settings, opencodelists_url=url), {"TESTING": True})
    return app.test_client()


def test_submit_stores_codelists(
    client: FlaskClient, mocked: responses.RequestsMock
) -> None:
    fake = mock_github(mocked)

    body = query_with(codelist_2="opensafely/salbutamol-inhalers/2023-02-01")

    response = post(client, body)

    assert response.status_code == 201
    tree = {entry["path"]: entry for entry in fake.bodies["create_tree"][0]["tree"]}
    manifest = json.loads(tree["codelists/codelists.json"]["content"])
    assert tree["codelists/codelists.txt"]["content"] == (
        f"{CODELIST_ID}\nopensafely/salbutamol-inhalers/2023-02-01\n"
    )
    assert list(manifest["files"]) == [
        "opensafely-asthma-diagnosis.csv",
        "opensafely-salbutamol-inhalers.csv",
    ]
    assert tree["codelists/opensafely-asthma-diagnosis.csv"]["content"].startswith(
        "CTV3ID,"
    )


def test_commit_message_has_template_trailer(
    client: FlaskClient, mocked: responses.RequestsMock
) -> None:
    fake = mock_github(mocked)

    post(client, QUERY)

    message = fake.bodies["create_commit"][0]["message"]
    assert message.endswith("\nTemplate: event_counts@1.0.0\n")
    assert f"\n\nQuery-Id: {QUERY['id']}\n" in message


@pytest.mark.parametrize(
    ("inputs", "field", "words"),
    [
        pytest.param(
            {"codelist_1": "opensafely/asthma-diagnosis/1999-01-01"},
            "analysis.inputs.codelist_1",
            "was not found",
            id="unknown-version",
        ),
        pytest.param(
            {"codelist_2": "nobody/nothing/v1"},
            "analysis.inputs.codelist_2",
            "was not found",
            id="unknown-owner",
        ),
        pytest.param(
            {"codelist_2": "opensafely/salbutamol-inhalers/2024-09-30"},
            "analysis.inputs.codelist_2",
            "cannot be downloaded",
            id="draft",
        ),
        pytest.param(
            {"codelist_2": "opensafely/covid-identification/2020-06-03"},
            "analysis.inputs.codelist_2",
            "icd10",
            id="unsupported-coding-system",
        ),
    ],
)
def test_bad_codelist_is_400_naming_input(
    client: FlaskClient,
    mocked: responses.RequestsMock,
    inputs: dict[str, str],
    field: str,
    words: str,
) -> None:
    fake = mock_github(mocked)

    response = post(client, query_with(**inputs))

    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_request"
    assert [detail["field"] for detail in error["details"]] == [field]
    assert words in error["details"][0]["message"]
    assert fake.calls == []
    assert client.get(f"/api/v1/queries/{QUERY['id']}", headers=AUTH).status_code == 404


def test_unreachable_opencodelists_is_503_storing_nothing(
    settings: Settings, mocked: responses.RequestsMock
) -> None:
    fake = mock_github(mocked)
    client = client_for(settings, DEAD_URL)

    response = post(client, QUERY)

    assert response.status_code == 503
    error = response.get_json()["error"]
    assert error["code"] == "unavailable"
    assert "OpenCodelists" in error["message"]
    assert error["details"] == {"codelist": CODELIST_ID}
    assert fake.calls == []
    assert client.get(f"/api/v1/queries/{QUERY['id']}", headers=AUTH).status_code == 404


def test_replay_after_opencodelists_recovers(
    settings: Settings,
    mocked: responses.RequestsMock,
    opencodelists: OpenCodelistsSandbox,
    opencodelists_server: RunningServer,
) -> None:
    fake = mock_github(mocked)
    client = client_for(settings, opencodelists_server.url)
    opencodelists.fail_next(1, 503)

    failed = post(client, QUERY)
    replayed = post(client, QUERY)

    assert failed.status_code == 503
    assert replayed.status_code == 201
    assert fake.calls.count("create_commit") == 1


def test_replay_does_not_download_again(
    settings: Settings,
    mocked: responses.RequestsMock,
    opencodelists: OpenCodelistsSandbox,
    opencodelists_server: RunningServer,
) -> None:
    mock_github(mocked)
    client = client_for(settings, opencodelists_server.url)
    post(client, QUERY)
    calls = len(opencodelists.calls)

    replay = post(client, QUERY)

    assert replay.status_code == 200
    assert len(opencodelists.calls) == calls


def test_unexpected_opencodelists_answer_is_502(
    settings: Settings,
    mocked: responses.RequestsMock,
    opencodelists: OpenCodelistsSandbox,
    opencodelists_server: RunningServer,
) -> None:
    fake = mock_github(mocked)
    client = client_for(settings, opencodelists_server.url)
    opencodelists.fail_next(1, 403)

    response = post(client, QUERY)

    assert response.status_code == 502
    assert response.get_json()["error"]["code"] == "upstream_rejected"
    assert fake.calls == []


def test_hostile_title_committed_as_data(
    client: FlaskClient, mocked: responses.RequestsMock
) -> None:
    fake = mock_github(mocked)
    title = "{{ 7 * 7 }} '''\"; import os #\\ \u00e9"

    response = post(client, query_with(title=title))

    assert response.status_code == 201
    tree = {entry["path"]: entry for entry in fake.bodies["create_tree"][0]["tree"]}
    report = tree["analysis/report.py"]["content"]
    config = json.loads(tree["config.json"]["content"])
    assert config["inputs"]["title"] == title
    assert f"TITLE = {ascii(title)}\n" in report
