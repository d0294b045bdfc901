"""Settings from the environment: required variables, validation, defaults, secrets."""

from pathlib import Path

import pytest

from github_app.config import ConfigError, load_settings

WEBHOOK_SECRET = "webhook-secret-value-1"
JOB_SERVER_TOKEN = "job-server-token-value-2"
API_TOKEN = "api-token-value-3"
SECRETS = (WEBHOOK_SECRET, JOB_SERVER_TOKEN, API_TOKEN)

REQUIRED = (
    "GITHUB_APP_ID",
    "GITHUB_APP_PRIVATE_KEY",
    "GITHUB_WEBHOOK_SECRET",
    "QUERY_REPOSITORIES",
    "JOB_SERVER_URL",
    "JOB_SERVER_TOKEN",
    "API_TOKENS",
)


@pytest.fixture
def env(private_key_pem: str) -> dict[str, str]:
    """A complete environment that sets every required variable and no optional one."""
    return {
        "GITHUB_APP_ID": "12345",
        "GITHUB_APP_PRIVATE_KEY": private_key_pem,
        "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "QUERY_REPOSITORIES": "example-org/interactive-queries",
        "JOB_SERVER_URL": "http://127.0.0.1:9/job-server",
        "JOB_SERVER_TOKEN": JOB_SERVER_TOKEN,
        "API_TOKENS": API_TOKEN,
    }


def config_error(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(env)

    return str(info.value)


def test_load_settings_complete_environment(
    env: dict[str, str], private_key_pem: str
) -> None:
    settings = load_settings(env)

    assert settings.github_app_id == "12345"
    assert settings.github_private_key == private_key_pem.strip()
    assert settings.webhook_secrets == (WEBHOOK_SECRET,)
    assert settings.query_repositories == ("example-org/interactive-queries",)
    assert settings.job_server_url == "http://127.0.0.1:9/job-server"
    assert settings.job_server_token == JOB_SERVER_TOKEN
    assert settings.api_tokens == (API_TOKEN,)


@pytest.mark.parametrize("name", REQUIRED)
def test_load_settings_missing_variable_named(env: dict[str, str], name: str) -> None:
    del env[name]

    message = config_error(env)

    assert name in message
    assert "\n" not in message


@pytest.mark.parametrize("name", REQUIRED)
def test_load_settings_blank_variable_is_missing(
    env: dict[str, str], name: str
) -> None:
    env[name] = "   "

    message = config_error(env)

    assert name in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "name", ["GITHUB_WEBHOOK_SECRET", "QUERY_REPOSITORIES", "API_TOKENS"]
)
def test_load_settings_only_commas_rejected(
    env: dict[str, str], name: str
) -> None:
    env[name] = " , ,"

    with pytest.raises(ConfigError, match=name):
        load_settings(env)


@pytest.mark.parametrize(
    "value",
    [
        "interactive-queries",
        "example-org/interactive-queries/extra",
        "example-org/",
        "/interactive-queries",
        "example org/interactive-queries",
        "https://github.com/example-org/interactive-queries",
        "example-org/interactive-queries,not-a-repo",
    ],
)
def test_load_settings_repository_not_owner_name(
    env: dict[str, str], value: str
) -> None:
    env["QUERY_REPOSITORIES"] = value

    message = config_error(env)

    assert "QUERY_REPOSITORIES" in message
    assert "owner/name" in message
    assert "\n" not in message


@pytest.mark.parametrize("value", ["example-org/..", "example-org/."])
def test_load_settings_dot_repository_name_rejected(
    env: dict[str, str], value: str
) -> None:
    env["QUERY_REPOSITORIES"] = value

    with pytest.raises(ConfigError, match="QUERY_REPOSITORIES"):
        load_settings(env)


def test_load_settings_several_repositories(env: dict[str, str]) -> None:
    env["QUERY_REPOSITORIES"] = " example-org/one , example-org/two.git-x "

    settings = load_settings(env)

    assert settings.query_repositories == ("example-org/one", "example-org/two.git-x")


@pytest.mark.parametrize("name", ["JOB_SERVER_URL", "GITHUB_API_URL"])
@pytest.mark.parametrize(
    "value", ["ftp://127.0.0.1/jobs", "127.0.0.1:9/jobs", "http://", "file:///tmp/x"]
)
def test_load_settings_non_http_url(env: dict[str, str], name: str, value: str) -> None:
    env[name] = value

    message = config_error(env)

    assert name in message
    assert "\n" not in message


@pytest.mark.parametrize("name", ["JOB_SERVER_URL", "GITHUB_API_URL"])
def test_load_settings_url_trailing_slash_removed(
    env: dict[str, str], name: str
) -> None:
    env[name] = "https://127.0.0.1:9/base/"

    settings = load_settings(env)

    assert getattr(settings, name.lower()) == "https://127.0.0.1:9/base"


@pytest.mark.parametrize("value", ["text", "xml", "JSONL"])
def test_load_settings_unknown_log_format(env: dict[str, str], value: str) -> None:
    env["LOG_FORMAT"] = value

    message = config_error(env)

    assert "LOG_FORMAT" in message
    assert "json" in message
    assert "console" in message


@pytest.mark.parametrize("value", ["json", "console"])
def test_load_settings_log_format_choice(env: dict[str, str], value: str) -> None:
    env["LOG_FORMAT"] = value

    settings = load_settings(env)

    assert settings.log_format == value


@pytest.mark.parametrize(
    "value", ["a..b", "/main", "main/", "a//b", "main.lock", "has space", "a@{b", "x~1"]
)
def test_load_settings_bad_branch(env: dict[str, str], value: str) -> None:
    env["QUERY_BRANCH"] = value

    message = config_error(env)

    assert "QUERY_BRANCH" in message
    assert "\n" not in message


@pytest.mark.parametrize("value", [".hidden", "feature/.x", "main.", "-main"])
def test_load_settings_branch_git_rejects(env: dict[str, str], value: str) -> None:
    env["QUERY_BRANCH"] = value

    with pytest.raises(ConfigError, match="QUERY_BRANCH"):
        load_settings(env)


@pytest.mark.parametrize("value", ["release/2024", "query-runs", "v1.2"])
def test_load_settings_valid_branch(env: dict[str, str], value: str) -> None:
    env["QUERY_BRANCH"] = value

    settings = load_settings(env)

    assert settings.query_branch == value


def test_load_settings_defaults(env: dict[str, str]) -> None:
    settings = load_settings(env)

    assert settings.github_api_url == "https://api.github.com"
    assert settings.query_branch == "main"
    assert settings.log_format == "json"
    assert settings.database_url is None


def test_load_settings_blank_optional_uses_default(env: dict[str, str]) -> None:
    env.update(GITHUB_API_URL=" ", QUERY_BRANCH="", LOG_FORMAT=" ", DATABASE_URL="")

    settings = load_settings(env)

    assert settings.github_api_url == "https://api.github.com"
    assert settings.query_branch == "main"
    assert settings.log_format == "json"
    assert settings.database_url is None


def test_load_settings_two_webhook_secrets(env: dict[str, str]) -> None:
    env["GITHUB_WEBHOOK_SECRET"] = "new-secret, old-secret"

    settings = load_settings(env)

    assert settings.webhook_secrets == ("new-secret", "old-secret")


def test_load_settings_several_api_tokens(env: dict[str, str]) -> None:
    env["API_TOKENS"] = "token-aaa,token-bbb"

    settings = load_settings(env)

    assert settings.api_tokens == ("token-aaa", "token-bbb")


@pytest.mark.parametrize(
    "name", ["API_TOKENS", "GITHUB_WEBHOOK_SECRET", "JOB_SERVER_TOKEN"]
)
def test_load_settings_short_secret_rejected(env: dict[str, str], name: str) -> None:
    env[name] = "z"

    with pytest.raises(ConfigError, match=f"^{name} contains a value shorter than 8"):
        load_settings(env)


def test_load_settings_private_key_from_path(
    env: dict[str, str], private_key_pem: str, tmp_path: Path
) -> None:
    key_file = tmp_path / "app.pem"
    key_file.write_text(private_key_pem)
    del env["GITHUB_APP_PRIVATE_KEY"]
    env["GITHUB_APP_PRIVATE_KEY_PATH"] = str(key_file)

    settings = load_settings(env)

    assert settings.github_private_key == private_key_pem


def test_load_settings_key_escaped_newlines(
    env: dict[str, str], private_key_pem: str
) -> None:
    env["GITHUB_APP_PRIVATE_KEY"] = private_key_pem.strip().replace("\n", "\\n")

    settings = load_settings(env)

    assert settings.github_private_key == private_key_pem.strip()


def test_load_settings_both_private_key_variables(
    env: dict[str, str], private_key_pem: str, tmp_path: Path
) -> None:
    key_file = tmp_path / "app.pem"
    key_file.write_text(private_key_pem)
    env["GITHUB_APP_PRIVATE_KEY_PATH"] = str(key_file)

    message = config_error(env)

    assert "GITHUB_APP_PRIVATE_KEY and GITHUB_APP_PRIVATE_KEY_PATH" in message
    assert "\n" not in message


@pytest.mark.parametrize("missing", ["absent.pem", "."])
def test_load_settings_unreadable_key_path(
    env: dict[str, str], tmp_path: Path, missing: str
) -> None:
    del env["GITHUB_APP_PRIVATE_KEY"]
    env["GITHUB_APP_PRIVATE_KEY_PATH"] = str(tmp_path / missing)

    message = config_error(env)

    assert "GITHUB_APP_PRIVATE_KEY_PATH" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "value",
    [
        "not-a-pem-key-secret",
        "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n",
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    ],
)
def test_load_settings_private_key_not_pem(env: dict[str, str], value: str) -> None:
    env["GITHUB_APP_PRIVATE_KEY"] = value

    message = config_error(env)

    assert "GITHUB_APP_PRIVATE_KEY" in message
    assert "PEM" in message
    assert "\n" not in message
    assert "MIIB" not in message
    assert "not-a-pem-key-secret" not in message


def test_load_settings_private_key_garbage_body(env: dict[str, str]) -> None:
    env["GITHUB_APP_PRIVATE_KEY"] = (
        "-----BEGIN RSA PRIVATE KEY-----\nnot base64 at all\n"
        "-----END RSA PRIVATE KEY-----\n"
    )

    with pytest.raises(ConfigError, match="GITHUB_APP_PRIVATE_KEY"):
        load_settings(env)


def test_load_settings_key_file_not_pem_names_path(
    env: dict[str, str], tmp_path: Path
) -> None:
    key_file = tmp_path / "app.pem"
    key_file.write_text("not a key\n")
    del env["GITHUB_APP_PRIVATE_KEY"]
    env["GITHUB_APP_PRIVATE_KEY_PATH"] = str(key_file)

    with pytest.raises(ConfigError, match="GITHUB_APP_PRIVATE_KEY_PATH"):
        load_settings(env)


def test_settings_repr_hides_secrets(env: dict[str, str], private_key_pem: str) -> None:
    env["GITHUB_WEBHOOK_SECRET"] = f"{WEBHOOK_SECRET},rotated-secret-value"
    settings = load_settings(env)

    text = repr(settings)

    for secret in (*SECRETS, "rotated-secret-value"):
        assert secret not in text
    assert "PRIVATE KEY" not in text
    assert private_key_pem.splitlines()[1] not in text


def test_settings_repr_hides_database_password(env: dict[str, str]) -> None:
    env["DATABASE_URL"] = "postgresql://app:db-password-value@127.0.0.1:5432/app"
    settings = load_settings(env)

    text = repr(settings)

    assert "db-password-value" not in text


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("QUERY_REPOSITORIES", "not-a-repo"),
        ("JOB_SERVER_URL", "ftp://127.0.0.1/jobs"),
        ("GITHUB_API_URL", "127.0.0.1:9"),
        ("LOG_FORMAT", "text"),
        ("QUERY_BRANCH", "a..b"),
        ("GITHUB_APP_PRIVATE_KEY", "not-a-pem-key"),
        ("GITHUB_APP_ID", ""),
        ("API_TOKENS", ""),
    ],
)
def test_config_error_hides_secrets(
    env: dict[str, str], private_key_pem: str, name: str, value: str
) -> None:
    env[name] = value

    message = config_error(env)

    for secret in SECRETS:
        assert secret not in message
    assert private_key_pem.splitlines()[1] not in message


def test_load_settings_bad_url_hides_password(env: dict[str, str]) -> None:
    env["JOB_SERVER_URL"] = "ftp://user:tok123456@jobs.example.org"

    with pytest.raises(ConfigError, match="^JOB_SERVER_URL must be") as info:
        load_settings(env)

    assert "tok123456" not in str(info.value)
