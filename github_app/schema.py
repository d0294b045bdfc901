"""The database schema: Alembic migrations and the revision check at start-up.

The schema is created and changed only by the migrations in
``github_app/migrations/versions``, applied with ``github-app db upgrade``. The
app does not migrate when it starts. It checks that the database is at the
latest revision and stops with an error otherwise, so an instance never runs
against a schema it was not written for. A deployment runs the upgrade once,
before it starts the new instances.
"""

import tempfile
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine
from sqlalchemy.engine import Engine

from github_app.config import ConfigError
from github_app.store import Base

MIGRATIONS = "github_app:migrations"


class SchemaOutOfDateError(ConfigError):
    """The database is not at the schema revision this version of the app uses."""


def alembic_config(connection: Connection | None = None) -> Config:
    """Return an Alembic configuration that runs migrations on ``connection``."""
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """Return the latest revision among the bundled migrations."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the initial migration is bundled
        raise RuntimeError("No migrations are bundled with the app.")

    return head


def current_revision(engine: Engine) -> str | None:
    """Return the database's schema revision, or None if it was never migrated."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply the migrations up to ``revision`` in one transaction."""
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), revision)


def check_current(engine: Engine) -> None:
    """Check that the database is at the latest revision.

    Raises:
        SchemaOutOfDateError: it is at another revision, or was never migrated.
    """
    current = current_revision(engine)
    head = head_revision()
    if current != head:
        found = "has no schema" if current is None else f"is at revision {current}"
        raise SchemaOutOfDateError(
            f"The database at DATABASE_URL {found}, but this version of the app "
            f"needs revision {head}: run `github-app db upgrade` first."
        )


def differences(engine: Engine) -> list[Any]:
    """Return how the database's schema differs from the models in ``store``.

    Empty when the migrations and the models agree.
    """
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff: list[Any] = compare_metadata(context, Base.metadata)
        return diff


def create_revision(message: str) -> Path:
    """Write a migration from the models' differences to the latest revision.

    The differences are found against a scratch SQLite database upgraded to the
    latest revision. Revisions are numbered in order (``0001``, ``0002``, ...).
    Returns the path of the new migration, to be reviewed.
    """
    scripts = ScriptDirectory.from_config(alembic_config())
    revision_id = f"{len(list(scripts.walk_revisions())) + 1:04d}"
    with tempfile.TemporaryDirectory() as folder:
        engine = create_engine(f"sqlite:///{Path(folder) / 'scratch.sqlite'}")
        upgrade(engine)
        with engine.begin() as connection:
            script = command.revision(
                alembic_config(connection),
                message=message,
                autogenerate=True,
                rev_id=revision_id,
            )
        engine.dispose()

    if script is None or isinstance(script, list):  # pragma: no cover - one head
        raise RuntimeError("Alembic did not write exactly one migration.")

    return Path(script.path)
