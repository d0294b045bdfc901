"""Webhook signature checks, on the pure function and through the endpoint."""

import json

import pytest
from flask.testing import FlaskClient

from github_app.webhooks import SignatureError, sign, verify_signature
from tests.conftest import WEBHOOK_SECRET

# GitHub's published example.
# https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries#testing-the-webhook-payload-validation
VECTOR_SECRET = "It's a Secret to Everybody"
VECTOR_BODY = b"Hello, World!"
VECTOR_SIGNATURE = (
    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
)


def test_sign_matches_github_vector() -> None:
    assert sign(VECTOR_BODY, VECTOR_SECRET) == VECTOR_SIGNATURE


def test_verify_accepts_github_vector() -> None:
    verify_signature(VECTOR_BODY, VECTOR_SIGNATURE, [VECTOR_SECRET])


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha256=" + "0" * 64,
        VECTOR_SIGNATURE.replace("sha256=", "sha1="),
        "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59",
        VECTOR_SIGNATURE.upper(),
    ],
)
def test_verify_rejects_bad_signature(header: str | None) -> None:
    with pytest.raises(SignatureError):
        verify_signature(VECTOR_BODY, header, [VECTOR_SECRET])


def test_verify_rejects_other_body() -> None:
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature(b"Hello, World?", VECTOR_SIGNATURE, [VECTOR_SECRET])


def test_verify_accepts_either_secret_while_rotating() -> None:
    verify_signature(VECTOR_BODY, VECTOR_SIGNATURE, ["new-secret", VECTOR_SECRET])


def test_non_ascii_body_verifies_only_as_received() -> None:
    body = '{"message": "caf\\u00e9 \\"q\\" ✓ naïve"}'.encode()
    reserialised = json.dumps(json.loads(body)).encode()

    verify_signature(body, sign(body, "s"), ["s"])
    with pytest.raises(SignatureError):
        verify_signature(reserialised, sign(body, "s"), ["s"])


def ping(client: FlaskClient, signature: str | None) -> int:
    body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()
    headers = {
        "X-GitHub-Event": "ping",
        "X-GitHub-Delivery": "d2f4a6c8-0000-4000-8000-000000000001",
        "Content-Type": "application/json",
    }
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    return client.post("/api/github/webhooks", data=body, headers=headers).status_code


@pytest.mark.parametrize(
    "signature",
    [None, "sha256=" + "0" * 64, "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59"],
)
def test_endpoint_rejects_bad_signature(client: FlaskClient, signature: str | None) -> None:
    assert ping(client, signature) == 401


def test_endpoint_accepts_signed_ping(client: FlaskClient) -> None:
    body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()

    assert ping(client, sign(body, WEBHOOK_SECRET)) == 200


def test_rejected_delivery_is_not_stored(client: FlaskClient, app: object) -> None:
    ping(client, "sha256=" + "0" * 64)

    assert client.application.config["STORE"].deliveries() == []
