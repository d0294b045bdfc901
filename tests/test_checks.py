"""``github-app check`` against the GitHub and Job Server stand-ins."""

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from github_app import cli
from github_app.config import Settings
from tests.conftest import API_TOKEN, REPO, WEBHOOK_SECRET
from tests.test_end_to_end import (  # noqa: F401 - fixtures
    Stack,
    app_settings_changes,
    stack,
)


def environment(settings: Settings) -> dict[str, str]:
    """Return the environment variables that configure ``settings``."""
    return {
        "GITHUB_APP_ID": settings.github_app_id,
        "GITHUB_APP_PRIVATE_KEY": settings.github_private_key,
        "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "GITHUB_API_URL": settings.github_api_url,
        "QUERY_REPOSITORIES": REPO,
        "JOB_SERVER_URL": settings.job_server_url,
        "JOB_SERVER_TOKEN": settings.job_server_token,
        "API_TOKENS": API_TOKEN,
        "OPENCODELISTS_URL": settings.opencodelists_url,
        "DATABASE_URL": settings.database_url or "",
    }


def run_check(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
) -> tuple[int, list[str]]:
    for name in ("GITHUB_APP_PRIVATE_KEY_PATH", "QUERY_BRANCH", "LOG_FORMAT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    code = cli.main(["check"])

    # The stand-ins run in this process, and their request logs interleave.
    lines = capsys.readouterr().out.splitlines()
    return code, [line for line in lines if line.startswith(("ok ", "FAILED "))]


def other_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def test_check_passes_on_working_setup(
    stack: Stack,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, lines = run_check(monkeypatch, capsys, environment(stack.settings))

    assert code == 0
    assert [line.split(":")[0] for line in lines] == [
        "ok     environment",
        "ok     database",
        "ok     App JWT",
        f"ok     installation on {REPO}",
        f"ok     token permissions on {REPO}",
        f"ok     branch main in {REPO}",
        "ok     Job Server",
    ]
    assert stack.job_server.job_requests == []


def test_check_stops_at_wrong_key(
    stack: Stack,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = {**environment(stack.settings), "GITHUB_APP_PRIVATE_KEY": other_key()}

    code, lines = run_check(monkeypatch, capsys, env)

    assert code == 1
    assert lines[-1].startswith("FAILED App JWT: GitHub responded 401")
    assert "GITHUB_APP_ID" in lines[-1]
    assert len(lines) == 3


def test_check_stops_at_repository_not_installed(
    stack: Stack,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    other = "example-org/not-installed"
    env = {**environment(stack.settings), "QUERY_REPOSITORIES": f"{REPO},{other}"}

    code, lines = run_check(monkeypatch, capsys, env)

    assert code == 1
    assert lines[-1].startswith(f"FAILED installation on {other}: ")
    assert "not installed" in lines[-1]
    assert f"ok     branch main in {REPO}: " in "\n".join(lines)


@pytest.mark.parametrize(
    ("changes", "failed"),
    [
        ({"QUERY_BRANCH": "no-such-branch"}, f"branch no-such-branch in {REPO}"),
        ({"JOB_SERVER_TOKEN": "wrong-token"}, "Job Server"),
        ({"GITHUB_WEBHOOK_SECRET": ""}, "environment"),
    ],
)
def test_check_names_the_failed_setting(
    stack: Stack,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    changes: dict[str, str],
    failed: str,
) -> None:
    env = {**environment(stack.settings), **changes}

    code, lines = run_check(monkeypatch, capsys, env)

    assert code == 1
    assert lines[-1].startswith(f"FAILED {failed}: ")
    assert all(line.startswith("ok ") for line in lines[:-1])


def test_check_fails_on_unmigrated_database(
    stack: Stack,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: object,
) -> None:
    env = {**environment(stack.settings), "DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}

    code, lines = run_check(monkeypatch, capsys, env)

    assert code == 1
    assert lines[-1].startswith("FAILED database: ")
    assert "github-app db upgrade" in lines[-1]


def test_check_output_holds_no_secret(
    stack: Stack,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = environment(stack.settings)

    _, lines = run_check(monkeypatch, capsys, env)

    output = "\n".join(lines)
    assert "ghs_" not in output
    assert env["JOB_SERVER_TOKEN"] not in output
    assert env["GITHUB_WEBHOOK_SECRET"] not in output
