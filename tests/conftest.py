"""Shared fixtures: a per-run RSA key, settings, and the app with mocked HTTP."""

import ipaddress
import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from flask.testing import FlaskClient

from github_app.app import create_app
from github_app.config import Settings
from sandbox.opencodelists import OpenCodelistsSandbox
from sandbox.servers import serve
from tests import databases

# Loopback addresses with nothing listening: a request that escapes the mocks
# fails at once instead of reaching another host.
GITHUB_URL = "http://127.0.0.1:9/github"
JOB_SERVER_URL = "http://127.0.0.1:9/job-server"
REPO = "example-org/interactive-queries"
API_TOKEN = "test-api-token"
WEBHOOK_SECRET = "test-webhook-secret"
_POSTGRES_LEFT_OUT = pytest.StashKey[int]()


@pytest.fixture(scope="session")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def private_key_pem(private_key: rsa.RSAPrivateKey) -> str:
    return private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture(scope="session")
def public_key_pem(private_key: rsa.RSAPrivateKey) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return databases.make_sqlite_template(tmp_path_factory.mktemp("template"))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[databases.PostgresServer | None]:
    url = databases.postgres_url()
    if url is None:
        yield None
        return

    server = databases.PostgresServer(url)
    yield server
    server.stop()


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    """A fresh migrated SQLite database."""
    return databases.copy_sqlite(sqlite_template, tmp_path)


@pytest.fixture
def postgres_url(
    postgres_server: databases.PostgresServer | None,
) -> Iterator[str]:
    """A fresh migrated PostgreSQL database; skips without TEST_POSTGRES_URL."""
    if postgres_server is None:
        pytest.skip(databases.SKIP_REASON)

    with postgres_server.database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """A fresh migrated database of each kind, so tests run on both."""
    fixture = {"sqlite": "sqlite_url", "postgresql": "postgres_url"}[request.param]
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture(scope="session")
def opencodelists_url() -> Iterator[str]:
    """Serve the OpenCodelists stand-in's catalogue on 127.0.0.1 for the session.

    Tests that inject faults start their own stand-in instead of changing this one.
    """
    with serve(OpenCodelistsSandbox().wsgi_app) as server:
        yield server.url


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any connection or name lookup for a host off this machine fail.

    Tests talk only to servers they start on 127.0.0.1 and to mocks, but the
    app's defaults name public hosts (api.github.com, www.opencodelists.org).
    """
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def check(host: Any) -> None:
        try:
            loopback = ipaddress.ip_address(str(host).split("%")[0]).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            raise OSError(f"Tests may only connect to loopback addresses, not {host!r}.")

    def connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            check(address[0])
        real_connect(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None:
            check(host.decode() if isinstance(host, bytes) else host)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def settings(
    opencodelists_url: str, private_key_pem: str, database_url: str
) -> Settings:
    return Settings(
        github_app_id="12345",
        github_private_key=private_key_pem,
        webhook_secrets=(WEBHOOK_SECRET,),
        query_repositories=(REPO,),
        job_server_url=JOB_SERVER_URL,
        job_server_token="test-job-server-token",
        api_tokens=(API_TOKEN,),
        github_api_url=GITHUB_URL,
        database_url=database_url,
        log_format="console",
        github_retry_budget=0.5,
        opencodelists_url=opencodelists_url,
    )


@pytest.fixture
def app(settings: Settings) -> Flask:
    return create_app(settings, {"TESTING": True})


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def mocked(opencodelists_url: str) -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_passthru(opencodelists_url)
        yield mock


def with_settings(settings: Settings, **changes: object) -> Settings:
    return replace(settings, **changes)


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Leave out the PostgreSQL runs when no server is configured."""
    if databases.postgres_url() is not None:
        return

    kept, left_out = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec else {}
        uses_postgres = "postgres_url" in getattr(item, "fixturenames", ())
        if params.get("database_url") == "postgresql" or uses_postgres:
            left_out.append(item)
        else:
            kept.append(item)

    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept
        config.stash[_POSTGRES_LEFT_OUT] = len(left_out)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    left_out = config.stash.get(_POSTGRES_LEFT_OUT, 0)
    if left_out:
        terminalreporter.write_line(
            f"Skipped {left_out} PostgreSQL tests: {databases.SKIP_REASON}."
        )
