"""A long-running worker signs a fresh App JWT whenever it mints a token."""

import json
from datetime import UTC, datetime
from typing import Any

import jwt
import responses

from github_app.github import GitHubClient
from tests.conftest import GITHUB_URL, REPO

START = 1_900_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def test_token_minted_after_11_minutes_uses_fresh_jwt(
    private_key_pem: str, public_key_pem: bytes
) -> None:
    clock = Clock()
    jwts: list[dict[str, Any]] = []

    def access_token(request: Any) -> Any:
        token = request.headers["Authorization"].removeprefix("Bearer ")
        # The fake clock is not the real one, so only the signature is verified.
        options = {"verify_exp": False, "verify_iat": False}
        jwts.append(
            jwt.decode(token, public_key_pem, algorithms=["RS256"], options=options)
        )
        # Tokens that expire after 10 minutes force a new mint at 11 minutes.
        expires = datetime.fromtimestamp(clock.now + 600, UTC)
        body = {"token": f"ghs_{len(jwts)}", "expires_at": expires.isoformat()}
        return 201, {}, json.dumps(body)

    client = GitHubClient(
        app_id="12345",
        private_key=private_key_pem,
        base_url=GITHUB_URL,
        clock=clock,
        sleep=lambda seconds: None,
    )
    with responses.RequestsMock() as mock:
        mock.add("GET", f"{GITHUB_URL}/repos/{REPO}/installation", json={"id": 5})
        mock.add_callback(
            "POST", f"{GITHUB_URL}/app/installations/5/access_tokens", access_token
        )
        mock.add(
            "GET",
            f"{GITHUB_URL}/repos/{REPO}/git/ref/heads/main",
            json={"object": {"type": "commit", "sha": "a" * 40}},
        )

        client.get_branch_head(REPO, "main")
        clock.now += 11 * 60
        client.get_branch_head(REPO, "main")

    assert len(jwts) == 2
    assert jwts[0]["iat"] == START - 60
    assert jwts[1]["iat"] == START + 11 * 60 - 60
    assert jwts[1]["exp"] > clock.now
    assert jwts[1]["exp"] - jwts[1]["iat"] <= 600
