"""Settings read from the environment, once, when the app is created.

Only this module reads ``os.environ``. A missing or malformed variable raises
``ConfigError`` whose message is one line naming the variable and what it expects,
so start-up stops with something an operator can act on. Secret values are never
included in messages or in ``repr``.
"""

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from github_app.codelists import DEFAULT_OPENCODELISTS_URL

#: The shortest secret accepted; shorter ones are not scrubbed from logs either.
MIN_SECRET_LENGTH = 8
# The name part may hold dots, but "." and ".." are path segments, not names.
REPOSITORY_PATTERN = re.compile(r"^[A-Za-z0-9-]+/(?!\.\.?$)[A-Za-z0-9._-]+$")
BRANCH_COMPONENT = re.compile(r"^(?![.-])[A-Za-z0-9._-]+(?<![.])(?<!\.lock)$")
DEFAULT_GITHUB_API_URL = "https://api.github.com"
LOG_FORMATS = ("json", "console")
LOG_LEVELS = ("info", "debug", "warning", "error")
#: Database backends and the drivers accepted for each. A URL that names no
#: driver gets psycopg 3 for PostgreSQL and the standard library for SQLite.
SUPPORTED_DATABASES = {
    "sqlite": ("pysqlite",),
    "postgresql": ("psycopg",),
    "postgres": ("psycopg",),
}


class ConfigError(Exception):
    """A setting is missing or malformed."""


@dataclass(frozen=True)
class Settings:
    """Validated configuration for one app instance."""

    github_app_id: str
    github_private_key: str = field(repr=False)
    webhook_secrets: tuple[str, ...] = field(repr=False)
    query_repositories: tuple[str, ...]
    job_server_url: str
    job_server_token: str = field(repr=False)
    api_tokens: tuple[str, ...] = field(repr=False)
    github_api_url: str = DEFAULT_GITHUB_API_URL
    query_branch: str = "main"
    #: Hidden from ``repr`` because the URL may hold a database password.
    database_url: str | None = field(default=None, repr=False)
    log_format: str = "json"
    log_level: str = "info"
    committer_name: str = "interactive-query-app[bot]"
    committer_email: str = "interactive-query-app[bot]@users.noreply.github.com"
    #: Seconds allowed for each outbound HTTP call, inside GitHub's 10-second
    #: window for responding to a webhook delivery.
    http_timeout: int = 5
    #: Seconds spent retrying one GitHub call that fails transiently.
    github_retry_budget: float = 8.0
    #: OpenCodelists' base URL, where the codelists a query names are
    #: downloaded from.
    opencodelists_url: str = DEFAULT_OPENCODELISTS_URL
    #: A folder of template packages, searched before the bundled ones.
    templates_dir: Path | None = None
    #: Seconds a worker may hold a query while committing and tagging it; a query
    #: whose worker stopped can be resumed by another after this time.
    query_lease_seconds: float = 120.0


def _required(env: Mapping[str, str], name: str, expected: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is not set: set it to {expected}.")

    return value


def _required_list(env: Mapping[str, str], name: str, expected: str) -> tuple[str, ...]:
    value = _required(env, name, expected)
    items = tuple(item.strip() for item in value.split(",") if item.strip())
    if not items:
        raise ConfigError(f"{name} contains no values: set it to {expected}.")

    return items


def _check_secret_lengths(name: str, values: tuple[str, ...]) -> None:
    # Short secrets are guessable, and the log scrubber cannot tell them from
    # ordinary words, so it leaves them in place.
    if any(len(value) < MIN_SECRET_LENGTH for value in values):
        raise ConfigError(
            f"{name} contains a value shorter than {MIN_SECRET_LENGTH} characters: "
            "use a long random value, e.g. from `openssl rand -hex 32`."
        )


def is_valid_branch(name: str) -> bool:
    """Return whether ``name`` is a branch name git accepts (a safe subset).

    https://git-scm.com/docs/git-check-ref-format
    """
    if ".." in name or "@{" in name:
        return False

    return all(BRANCH_COMPONENT.match(part) for part in name.split("/"))


def _check_url(name: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        # A URL may carry a credential before "@"; never echo it.
        shown = value if parts.password is None else "a URL with a password"
        raise ConfigError(
            f"{name} must be an http or https URL such as https://example.org, "
            f"got {shown!r}."
        )

    return value.rstrip("/")


def _read_private_key(env: Mapping[str, str]) -> str:
    inline = env.get("GITHUB_APP_PRIVATE_KEY", "").strip()
    path = env.get("GITHUB_APP_PRIVATE_KEY_PATH", "").strip()
    if inline and path:
        raise ConfigError(
            "GITHUB_APP_PRIVATE_KEY and GITHUB_APP_PRIVATE_KEY_PATH are both set: "
            "set only one of them."
        )

    name = "GITHUB_APP_PRIVATE_KEY"
    if path:
        name = "GITHUB_APP_PRIVATE_KEY_PATH"
        try:
            inline = Path(path).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not text"
            raise ConfigError(
                f"GITHUB_APP_PRIVATE_KEY_PATH points to {path!r}, which cannot be "
                f"read ({reason}): give the path of the App's PEM private key."
            ) from None

    if not inline:
        raise ConfigError(
            "GITHUB_APP_PRIVATE_KEY is not set: set it to the App's PEM private key, "
            "or set GITHUB_APP_PRIVATE_KEY_PATH to a file holding it."
        )

    # Some deployment tools cannot hold newlines in a variable and store "\n".
    key = inline.replace("\\n", "\n")
    try:
        loaded = serialization.load_pem_private_key(key.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        loaded = None
    if not isinstance(loaded, rsa.RSAPrivateKey):
        raise ConfigError(
            f"{name} does not hold an unencrypted RSA private key in PEM form: use "
            "the .pem file downloaded from the GitHub App's settings."
        )

    return key


def _read_repositories(env: Mapping[str, str]) -> tuple[str, ...]:
    repositories = _required_list(
        env, "QUERY_REPOSITORIES", "comma-separated owner/name repositories"
    )
    for repo in repositories:
        if not REPOSITORY_PATTERN.match(repo):
            raise ConfigError(
                f"QUERY_REPOSITORIES has {repo!r}, which is not of the form "
                "owner/name: use comma-separated owner/name values."
            )

    return repositories


def _read_choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    value = env.get(name, "").strip() or choices[0]
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}.")

    return value


def _read_templates_dir(env: Mapping[str, str]) -> Path | None:
    from github_app.templates import TemplateError, list_templates, load_template

    value = env.get("TEMPLATES_DIR", "").strip()
    if not value:
        return None

    folder = Path(value)
    if not folder.is_dir():
        raise ConfigError(
            f"TEMPLATES_DIR is {value!r}, which is not a folder: give the folder "
            "that holds template packages, or unset it."
        )

    # Load each template now so that a broken one stops start-up, not a query.
    for name in list_templates(folder):
        if (folder / name).is_dir():
            try:
                load_template(folder / name)
            except TemplateError as exc:
                raise ConfigError(f"TEMPLATES_DIR has a broken template: {exc}") from None

    return folder


def load_database_url(env: Mapping[str, str] | None = None) -> str | None:
    """Read ``DATABASE_URL``; None means the default SQLite file.

    Only ``sqlite`` and ``postgresql`` URLs are accepted. Messages show the URL
    with its password hidden.

    Raises:
        ConfigError: the URL cannot be parsed or names another database.
    """
    env = os.environ if env is None else env
    value = env.get("DATABASE_URL", "").strip()
    if not value:
        return None

    try:
        url = make_url(value)
    except ArgumentError:
        raise ConfigError(
            "DATABASE_URL is not a database URL: use one such as "
            "postgresql://user@host:5432/name or sqlite:////path/to/file.sqlite."
        ) from None

    backend, _, driver = url.drivername.partition("+")
    accepted = SUPPORTED_DATABASES.get(backend)
    if accepted is None or (driver and driver not in accepted):
        shown = url.render_as_string(hide_password=True)
        raise ConfigError(
            f"DATABASE_URL must be a postgresql:// (psycopg 3) or sqlite:// URL, "
            f"got {shown!r}."
        )

    return value


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate settings from ``env`` (by default the process environment).

    Raises:
        ConfigError: a variable is missing or malformed.
    """
    env = os.environ if env is None else env
    app_id = _required(env, "GITHUB_APP_ID", "the GitHub App's id or client id")
    private_key = _read_private_key(env)
    webhook_secrets = _required_list(
        env, "GITHUB_WEBHOOK_SECRET", "the App's webhook secret"
    )
    repositories = _read_repositories(env)
    job_server_url = _check_url(
        "JOB_SERVER_URL",
        _required(env, "JOB_SERVER_URL", "the Job Server base URL"),
    )
    job_server_token = _required(
        env, "JOB_SERVER_TOKEN", "the token this app uses to create job requests"
    )
    api_tokens = _required_list(
        env, "API_TOKENS", "comma-separated tokens accepted from Job Server"
    )
    _check_secret_lengths("GITHUB_WEBHOOK_SECRET", webhook_secrets)
    _check_secret_lengths("JOB_SERVER_TOKEN", (job_server_token,))
    _check_secret_lengths("API_TOKENS", api_tokens)
    github_api_url = _check_url(
        "GITHUB_API_URL",
        env.get("GITHUB_API_URL", "").strip() or DEFAULT_GITHUB_API_URL,
    )
    branch = env.get("QUERY_BRANCH", "").strip() or "main"
    if not is_valid_branch(branch):
        raise ConfigError(
            f"QUERY_BRANCH must be a valid branch name such as main, got {branch!r}."
        )

    return Settings(
        github_app_id=app_id,
        github_private_key=private_key,
        webhook_secrets=webhook_secrets,
        query_repositories=repositories,
        job_server_url=job_server_url,
        job_server_token=job_server_token,
        api_tokens=api_tokens,
        github_api_url=github_api_url,
        query_branch=branch,
        opencodelists_url=_check_url(
            "OPENCODELISTS_URL",
            env.get("OPENCODELISTS_URL", "").strip() or DEFAULT_OPENCODELISTS_URL,
        ),
        templates_dir=_read_templates_dir(env),
        database_url=load_database_url(env),
        log_format=_read_choice(env, "LOG_FORMAT", LOG_FORMATS),
        log_level=_read_choice(env, "LOG_LEVEL", LOG_LEVELS),
    )
