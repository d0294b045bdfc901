"""The App JWT and the installation token cache."""

import jwt
import pytest

from github_app.auth import (
    JWT_ISSUED_AT_BACKDATE,
    InstallationToken,
    TokenCache,
    build_jwt_claims,
    create_jwt,
)

NOW = 1_700_000_000


class FakeClock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_jwt_claims_backdated_and_short_lived() -> None:
    claims = build_jwt_claims(app_id="12345", now=NOW)

    assert claims["iss"] == "12345"
    assert claims["iat"] == NOW - 60
    assert claims["exp"] > NOW
    assert claims["exp"] - claims["iat"] <= 600
    # Headroom for clock drift: the JWT expires well before GitHub's 10-minute cap.
    assert claims["exp"] <= NOW + 600 - JWT_ISSUED_AT_BACKDATE


def test_jwt_signed_rs256_with_app_key(private_key_pem: str, public_key_pem: bytes) -> None:
    token = create_jwt(app_id="12345", private_key=private_key_pem, now=NOW)

    header = jwt.get_unverified_header(token)
    claims = jwt.decode(
        token, public_key_pem, algorithms=["RS256"], options={"verify_exp": False}
    )
    assert header["alg"] == "RS256"
    assert claims == {"iat": NOW - 60, "exp": NOW - 60 + 540, "iss": "12345"}


def test_jwt_fresh_after_hours(private_key_pem: str, public_key_pem: bytes) -> None:
    first = create_jwt(app_id="1", private_key=private_key_pem, now=NOW)
    later = create_jwt(app_id="1", private_key=private_key_pem, now=NOW + 11 * 60)

    options = {"verify_exp": False}
    first_claims = jwt.decode(first, public_key_pem, algorithms=["RS256"], options=options)
    later_claims = jwt.decode(later, public_key_pem, algorithms=["RS256"], options=options)
    assert later_claims["iat"] == first_claims["iat"] + 11 * 60
    assert later_claims["exp"] > NOW + 11 * 60


class Minter:
    def __init__(self, clock: FakeClock, lifetime: float = 3600) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.minted: list[int] = []

    def __call__(self, installation_id: int) -> InstallationToken:
        self.minted.append(installation_id)
        return InstallationToken(
            token=f"ghs_{len(self.minted)}", expires_at=self.clock() + self.lifetime
        )


def test_token_cache_reuses_token_far_from_expiry() -> None:
    clock = FakeClock()
    minter = Minter(clock)
    cache = TokenCache(minter, clock=clock)
    first = cache.get(7)
    clock.now += 30 * 60

    second = cache.get(7)

    assert second == first
    assert minter.minted == [7]


def test_token_cache_renews_token_near_expiry() -> None:
    clock = FakeClock()
    minter = Minter(clock)
    cache = TokenCache(minter, clock=clock, margin=300)
    first = cache.get(7)
    clock.now += 3600 - 299

    second = cache.get(7)

    assert second != first
    assert minter.minted == [7, 7]


def test_token_cache_keeps_installations_apart() -> None:
    clock = FakeClock()
    minter = Minter(clock)
    cache = TokenCache(minter, clock=clock)

    assert cache.get(1) != cache.get(2)
    assert minter.minted == [1, 2]


def test_token_cache_invalidate_forgets_rejected_token() -> None:
    clock = FakeClock()
    minter = Minter(clock)
    cache = TokenCache(minter, clock=clock)
    first = cache.get(7)

    cache.invalidate(7, first)

    assert cache.get(7) != first


def test_token_repr_hides_token() -> None:
    token = InstallationToken(token="ghs_secret", expires_at=1.0)

    assert "ghs_secret" not in repr(token)


@pytest.mark.parametrize("stale", ["ghs_other"])
def test_token_cache_invalidate_ignores_stale_token(stale: str) -> None:
    clock = FakeClock()
    minter = Minter(clock)
    cache = TokenCache(minter, clock=clock)
    current = cache.get(7)

    cache.invalidate(7, stale)

    assert cache.get(7) == current
