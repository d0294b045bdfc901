"""The OpenAPI 3.1 description of the query API, served at /api/v1/openapi.json.

The request schema is ``queries.REQUEST_SCHEMA`` itself, so the document and
the validation cannot drift apart. A template's ``inputs`` are checked against
that template's own JSON Schema, which the document does not repeat.
"""

from typing import Any

from github_app.queries import QUERY_ID_PATTERN, REQUEST_SCHEMA
from github_app.store import FAILED, STATES

_ERROR = {"$ref": "#/components/schemas/Error"}
_QUERY = {"$ref": "#/components/schemas/Query"}
_STATUS = {"$ref": "#/components/schemas/Status"}
_NULLABLE_STRING = {"type": ["string", "null"]}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }


def _errors(*statuses: int) -> dict[str, Any]:
    descriptions = {
        400: "The request is invalid; details lists each problem.",
        401: "The bearer token is missing or not accepted.",
        404: "No query with that id was received.",
        409: "The id belongs to a different query, or the query is not tagged yet.",
        413: "The request body is too large.",
        415: "The request body is not JSON.",
        422: "The tag's commit is not the query's commit, or is not on the branch.",
        502: "GitHub or Job Server rejected a call; the query failed.",
        503: "GitHub or Job Server is unavailable; send the request again later.",
    }
    return {str(status): _json(_ERROR, descriptions[status]) for status in statuses}


_QUERY_ID_PARAMETER = {
    "name": "query_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": QUERY_ID_PATTERN.pattern},
}

_SCHEMAS: dict[str, Any] = {
    "QueryRequest": {
        **REQUEST_SCHEMA,
        "description": "A query: its id is also the tag name, so it must not end "
        "in .lock or contain '..'. The template's inputs are checked against the "
        "template's JSON Schema.",
    },
    "Query": {
        "type": "object",
        "required": ["id", "state", "repo", "branch", "sha", "tag", "job_requests"],
        "properties": {
            "id": {"type": "string"},
            "state": {"type": "string", "enum": [*STATES, FAILED]},
            "repo": {"type": "string"},
            "branch": {"type": "string"},
            "sha": _NULLABLE_STRING,
            "tag": _NULLABLE_STRING,
            "commit_url": _NULLABLE_STRING,
            "error": _NULLABLE_STRING,
            "job_requests": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "url", "trigger", "sha", "created_at"],
                    "properties": {
                        "id": _NULLABLE_STRING,
                        "url": _NULLABLE_STRING,
                        "trigger": {"type": "string"},
                        "sha": {"type": "string"},
                        "created_at": {"type": "string"},
                    },
                },
            },
        },
    },
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "details": {},
                },
            }
        },
    },
    "Status": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string"}, "reason": {"type": "string"}},
    },
}


def document() -> dict[str, Any]:
    """Return the OpenAPI document of the query API and the health checks."""
    bearer: list[dict[str, list[str]]] = [{"bearer": []}]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Interactive query app",
            "version": "1",
            "description": "Job Server submits queries; the app commits and tags "
            "each query's code and creates its job request.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": _SCHEMAS,
        },
        "paths": {
            "/api/v1/queries": {
                "post": {
                    "operationId": "createQuery",
                    "summary": "Submit a query, or send it again to resume it",
                    "security": bearer,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/QueryRequest"}
                            }
                        },
                    },
                    "responses": {
                        "200": _json(_QUERY, "The same query was received before."),
                        "201": _json(_QUERY, "The query was committed and tagged."),
                        **_errors(400, 401, 409, 413, 415, 422, 502, 503),
                    },
                }
            },
            "/api/v1/queries/{query_id}": {
                "get": {
                    "operationId": "getQuery",
                    "summary": "Read a query, its commit, tag and job requests",
                    "security": bearer,
                    "parameters": [_QUERY_ID_PARAMETER],
                    "responses": {
                        "200": _json(_QUERY, "The query."),
                        **_errors(401, 404),
                    },
                }
            },
            "/api/v1/queries/{query_id}/resubmit": {
                "post": {
                    "operationId": "resubmitQuery",
                    "summary": "Create another job request for the tagged commit",
                    "security": bearer,
                    "parameters": [_QUERY_ID_PARAMETER],
                    "responses": {
                        "201": _json(_QUERY, "A new job request was created."),
                        **_errors(401, 404, 409, 422, 502, 503),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "healthz",
                    "summary": "Check that the process is up",
                    "responses": {"200": _json(_STATUS, "The process is up.")},
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "readyz",
                    "summary": "Check that the database is reachable",
                    "responses": {
                        "200": _json(_STATUS, "The database is reachable."),
                        "503": _json(_STATUS, "The database is not reachable."),
                    },
                }
            },
        },
    }

