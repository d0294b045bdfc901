"""``github-app check``: confirm an installation's set-up before it goes live.

Each check prints one line, ``ok`` or ``FAILED``. The run stops at the first
failure, because later checks depend on earlier ones: without a JWT no
installation can be found, and without an installation no token minted. The
checks read the same environment as the app and make only read calls, apart
from minting one installation token per repository and sending one empty job
request, which Job Server rejects.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from github_app import schema
from github_app.app import default_database_url
from github_app.config import ConfigError, Settings, load_settings
from github_app.github import (
    GitHubClient,
    GitHubError,
    GitHubResponseError,
    RepositoryNotInstalledError,
)
from github_app.jobs import JobServerClient, JobServerError
from github_app.logs import configure_logging
from github_app.store import Store

#: The permission the App needs on each query repository.
REQUIRED_PERMISSION = ("contents", "write")


class CheckFailedError(Exception):
    """A check found a problem, and the message names what to fix."""


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check, as printed."""

    name: str
    passed: bool
    detail: str

    def line(self) -> str:
        return f"{'ok' if self.passed else 'FAILED':<6} {self.name}: {self.detail}"


Check = tuple[str, Callable[[], str]]


def _github_checks(settings: Settings, github: GitHubClient) -> list[Check]:
    def app_jwt() -> str:
        # Finding an installation is the first call made with the App's JWT.
        repo = settings.query_repositories[0]
        try:
            github.installation_id(repo)
        except RepositoryNotInstalledError:
            pass
        except GitHubResponseError as exc:
            if exc.status != 401:
                raise
            raise CheckFailedError(
                f"{exc}: check that GITHUB_APP_ID and the private key belong to the "
                "same App, and that the key has not been revoked."
            ) from exc
        return "GitHub accepted the App's JWT"

    checks: list[Check] = [("App JWT", app_jwt)]
    for repo in settings.query_repositories:
        checks += _repository_checks(settings, github, repo)
    return checks


def _repository_checks(
    settings: Settings, github: GitHubClient, repo: str
) -> list[Check]:
    def installation() -> str:
        return f"installation {github.installation_id(repo)}"

    def permission() -> str:
        name, level = REQUIRED_PERMISSION
        granted = github.token_permissions(repo).get(name)
        if granted != level:
            raise CheckFailedError(
                f"the installation token has {name}: {granted or 'none'}, not "
                f"{name}: {level}: grant it in the App's permissions, then accept "
                "the new permissions on the installation."
            )
        return f"the installation token has {name}: {level}"

    def branch() -> str:
        sha = github.get_branch_head(repo, settings.query_branch)
        return f"{settings.query_branch} is at {sha}"

    return [
        (f"installation on {repo}", installation),
        (f"token permissions on {repo}", permission),
        (f"branch {settings.query_branch} in {repo}", branch),
    ]


def run_checks(env: dict[str, str] | None = None) -> Iterator[CheckResult]:
    """Run the checks in order, yielding each result and stopping at a failure."""
    try:
        settings = load_settings(env)
    except ConfigError as exc:
        yield CheckResult("environment", False, str(exc))
        return

    # The check lines are the output; the clients' info logs would bury them.
    configure_logging(
        settings.log_format,
        "error",
        secrets=[settings.github_private_key, settings.job_server_token],
    )
    repositories = ", ".join(settings.query_repositories)
    yield CheckResult(
        "environment", True, f"settings valid; repositories {repositories}"
    )
    github = GitHubClient.from_settings(settings)
    job_server = JobServerClient.from_settings(settings)

    def database() -> str:
        store = Store(settings.database_url or default_database_url())
        try:
            schema.check_current(store.engine)
        finally:
            store.engine.dispose()
        return f"schema at revision {schema.head_revision()}"

    def job_server_access() -> str:
        status = job_server.check_access()
        return f"accepted the token and responded {status} to an empty job request"

    checks: list[Check] = [
        ("database", database),
        *_github_checks(settings, github),
        ("Job Server", job_server_access),
    ]
    for name, check in checks:
        try:
            detail = check()
        except (CheckFailedError, ConfigError) as exc:
            yield CheckResult(name, False, str(exc))
            return
        except GitHubError as exc:
            yield CheckResult(name, False, f"{exc} Check GITHUB_API_URL and the App.")
            return
        except JobServerError as exc:
            message = f"{exc} Check JOB_SERVER_URL and JOB_SERVER_TOKEN."
            yield CheckResult(name, False, message)
            return
        except SQLAlchemyError as exc:
            # The driver's first line names the host and the problem, never the
            # password.
            reason = str(exc.orig if hasattr(exc, "orig") else exc).splitlines()[0]
            yield CheckResult(name, False, f"cannot use DATABASE_URL: {reason}")
            return

        yield CheckResult(name, True, detail)
