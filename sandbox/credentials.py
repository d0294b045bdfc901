"""App JWT checks and installation tokens of the GitHub stand-in.

GitHub accepts an App JWT only if it is signed with RS256 by the App's key,
names the App in ``iss`` and is short-lived. Its documentation requires an
``exp`` at most 10 minutes ahead and recommends backdating ``iat`` by 60
seconds against clock drift:
https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/generating-a-json-web-token-jwt-for-a-github-app

The sandbox also limits ``exp - iat`` to 10 minutes. That is stricter than
the documented rule, so a client that passes here keeps a margin on GitHub.
"""

from __future__ import annotations

import dataclasses
import secrets
import string
import threading
import time

import jwt

#: Maximum seconds from ``iat`` to ``exp`` and from now to ``exp``.
MAX_JWT_LIFETIME = 600
#: Seconds of clock drift tolerated on top of ``MAX_JWT_LIFETIME``.
JWT_LIFETIME_TOLERANCE = 5
#: Maximum seconds that ``iat`` may lie ahead of the sandbox's clock.
MAX_IAT_AHEAD = 60
_TOKEN_ALPHABET = string.ascii_letters + string.digits


class CredentialsError(Exception):
    """The request's credentials are invalid; the message is GitHub's."""


def verify_app_jwt(
    token: str, *, public_key: bytes, app_id: str, now: float | None = None
) -> None:
    """Check an App JWT as GitHub does.

    Raises:
        CredentialsError: the signature, issuer or times are invalid.
    """
    now = time.time() if now is None else now
    try:
        claims = jwt.decode(
            token,
            public_key,
            algorithms=["RS256"],
            options={
                "require": ["iat", "exp", "iss"],
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.PyJWTError as exc:
        raise CredentialsError("A JSON web token could not be decoded") from exc

    issued_at, expires_at = claims["iat"], claims["exp"]
    if not isinstance(issued_at, int | float) or not isinstance(
        expires_at, int | float
    ):
        raise CredentialsError("'iat' and 'exp' claims must be numeric timestamps")

    if str(claims["iss"]) != app_id:
        raise CredentialsError(
            f"'Issuer' claim ('iss') {claims['iss']!r} does not match this App"
        )

    if expires_at <= now:
        raise CredentialsError("'Expiration time' claim ('exp') must be in the future")

    limit = MAX_JWT_LIFETIME + JWT_LIFETIME_TOLERANCE
    if expires_at - issued_at > limit or expires_at - now > limit:
        raise CredentialsError(
            "'Expiration time' claim ('exp') is too far in the future: GitHub "
            f"accepts at most {MAX_JWT_LIFETIME} s after 'iat' and after now"
        )

    if issued_at > now + MAX_IAT_AHEAD:
        raise CredentialsError(
            f"'Issued at' claim ('iat') is more than {MAX_IAT_AHEAD} s ahead of "
            "the server's clock"
        )


@dataclasses.dataclass(frozen=True)
class InstallationToken:
    """An installation access token and what it may reach."""

    token: str
    installation_id: int
    expires_at: float
    repositories: frozenset[str]
    permissions: dict[str, str]


class TokenStore:
    """Issue installation tokens and look them up, thread-safely."""

    def __init__(self) -> None:
        self._tokens: dict[str, InstallationToken] = {}
        self._lock = threading.Lock()

    def issue(
        self,
        installation_id: int,
        *,
        lifetime: float,
        repositories: frozenset[str],
        permissions: dict[str, str],
    ) -> InstallationToken:
        """Create a random ``ghs_`` token valid for ``lifetime`` seconds."""
        value = "ghs_" + "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(36))
        token = InstallationToken(
            token=value,
            installation_id=installation_id,
            expires_at=time.time() + lifetime,
            repositories=repositories,
            permissions=permissions,
        )
        with self._lock:
            self._tokens[value] = token

        return token

    def find(self, value: str) -> InstallationToken | None:
        """Return the unexpired token ``value``, or None if it is unknown or expired."""
        with self._lock:
            token = self._tokens.get(value)

        if token is None or token.expires_at <= time.time():
            return None

        return token

    def expire_all(self) -> None:
        """Make every issued token expire now."""
        with self._lock:
            now = time.time()
            self._tokens = {
                value: dataclasses.replace(token, expires_at=now)
                for value, token in self._tokens.items()
            }
