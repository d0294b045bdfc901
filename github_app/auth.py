"""GitHub App authentication: the App's JWT and cached installation tokens.

The JWT and the token cache are pure apart from the ``mint`` callable handed to the
cache, so both are tested without HTTP. Tokens and JWTs are never logged.
"""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import jwt

# https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/generating-a-json-web-token-jwt-for-a-github-app
#: Seconds to backdate ``iat``, so a clock slightly ahead of GitHub's is accepted.
JWT_ISSUED_AT_BACKDATE = 60
#: Seconds from ``iat`` to ``exp``. GitHub rejects more than 600; this leaves 60 s of
#: headroom for clock drift between this host and GitHub.
JWT_LIFETIME = 540
JWT_ALGORITHM = "RS256"
#: Seconds before an installation token's stated expiry at which it is renewed.
TOKEN_RENEWAL_MARGIN = 300


def build_jwt_claims(*, app_id: str, now: float) -> dict[str, int | str]:
    """Return the claims of an App JWT issued at ``now`` (seconds since the epoch)."""
    issued_at = int(now) - JWT_ISSUED_AT_BACKDATE
    return {"iat": issued_at, "exp": issued_at + JWT_LIFETIME, "iss": app_id}


def create_jwt(*, app_id: str, private_key: str, now: float | None = None) -> str:
    """Sign a fresh App JWT with the App's RSA private key."""
    claims = build_jwt_claims(app_id=app_id, now=time.time() if now is None else now)
    return jwt.encode(claims, private_key, algorithm=JWT_ALGORITHM)


@dataclass(frozen=True)
class InstallationToken:
    """An installation access token and its expiry time as GitHub gave it."""

    token: str
    expires_at: float

    def __repr__(self) -> str:
        return f"InstallationToken(token='***', expires_at={self.expires_at})"


def parse_expires_at(value: datetime | str) -> float:
    """Convert GitHub's ``expires_at`` (ISO 8601 or datetime) to epoch seconds."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))

    return value.timestamp()


class TokenCache:
    """Cache installation tokens per installation and renew them before expiry.

    ``mint(installation_id)`` fetches a new token from GitHub. One lock serialises
    minting, so concurrent threads that find no valid token mint it once.
    """

    def __init__(
        self,
        mint: Callable[[int], InstallationToken],
        *,
        clock: Callable[[], float] = time.time,
        margin: float = TOKEN_RENEWAL_MARGIN,
    ) -> None:
        self._mint = mint
        self._clock = clock
        self._margin = margin
        self._tokens: dict[int, InstallationToken] = {}
        self._lock = threading.Lock()

    def get(self, installation_id: int) -> str:
        """Return a token for the installation, minting one if none is fresh."""
        with self._lock:
            cached = self._tokens.get(installation_id)
            if cached and cached.expires_at - self._margin > self._clock():
                return cached.token

            fresh = self._mint(installation_id)
            self._tokens[installation_id] = fresh
            return fresh.token

    def invalidate(self, installation_id: int, token: str) -> None:
        """Forget ``token`` if it is still the cached one (GitHub rejected it)."""
        with self._lock:
            cached = self._tokens.get(installation_id)
            if cached and cached.token == token:
                del self._tokens[installation_id]
