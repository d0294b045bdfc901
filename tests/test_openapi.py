"""The OpenAPI document, and a schemathesis run of the app against it."""

import schemathesis
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from github_app import openapi
from github_app.queries import REQUEST_SCHEMA
from tests.test_end_to_end import (  # noqa: F401 - fixtures
    AUTH,
    Stack,
    app_settings_changes,
    stack,
)

#: Examples per operation: enough to reach every status of the document in a
#: few seconds, bounded so the suite stays fast.
EXAMPLES = 25


def test_document_served_without_token(client: FlaskClient) -> None:
    response = client.get("/api/v1/openapi.json")

    assert response.status_code == 200
    assert response.get_json() == openapi.document()


def test_document_request_schema_is_validation_schema() -> None:
    request_schema = openapi.document()["components"]["schemas"]["QueryRequest"]

    assert {k: v for k, v in request_schema.items() if k != "description"} == (
        REQUEST_SCHEMA
    )


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def test_api_answers_within_document(stack: Stack) -> None:  # noqa: F811
    """No 5xx, and every status, content type and body is one the document lists.

    Each operation gets a bounded, derandomized set of valid and of invalid
    generated requests, sent to the app running against the stand-ins.
    """
    schema = schemathesis.openapi.from_url(f"{stack.app.url}/api/v1/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]

    # The health checks take no input, so no invalid request exists for them.
    strategies = [operation.as_strategy() for operation in operations] + [
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE)
        for operation in operations
        if operation.path.startswith("/api/")
    ]

    for strategy in strategies:

        @given(case=strategy)
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        def call(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=AUTH, checks=CHECKS, timeout=30)

        call()

    assert len(operations) == 5
